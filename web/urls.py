from django.urls import path

from web import deliveries, environments, runs

urlpatterns = [
    path("", runs.dashboard, name="dashboard"),
    path("runs/", runs.runs, name="run-list"),
    path("runs/<int:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", runs.run_cancel_view, name="run-cancel"),
    path("runs/<int:pk>/retry/", runs.run_retry_view, name="run-retry"),
    path("projects/<slug:slug>/", runs.project_detail, name="project-detail"),
    path("projects/<slug:slug>/settings/", runs.project_settings, name="project-settings"),
    path(
        "projects/<slug:slug>/rotate-secret/",
        runs.project_rotate_secret,
        name="project-rotate-secret",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/",
        environments.environment_detail,
        name="environment-detail",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/promote/",
        environments.environment_promote_view,
        name="environment-promote",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/rollback/",
        environments.environment_rollback_view,
        name="environment-rollback",
    ),
    path("deliveries/<int:pk>/replay/", deliveries.delivery_replay_view, name="delivery-replay"),
]
