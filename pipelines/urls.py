from django.urls import path

from pipelines import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/", views.runs, name="run-list"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel_view, name="run-cancel"),
    path("runs/<int:pk>/retry/", views.run_retry_view, name="run-retry"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/settings/", views.project_settings, name="project-settings"),
    path(
        "projects/<slug:slug>/rotate-secret/",
        views.project_rotate_secret,
        name="project-rotate-secret",
    ),
]
