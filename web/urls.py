from django.urls import path

from releases.states import DeploymentKind
from web import app_logs, deliveries, environments, projects, run_logs, runs

# A run is addressed as it is named everywhere else (chat, commit statuses, the {run} tag):
# by its project and its number in that project.
RUN = "projects/<slug:slug>/runs/<int:number>/"

urlpatterns = [
    path("", projects.dashboard, name="dashboard"),
    path("runs/", runs.runs, name="run-list"),
    path(RUN, runs.run_detail, name="run"),
    path(f"{RUN}log.txt", run_logs.run_log_download, name="run-log-download"),
    path(f"{RUN}log/search", run_logs.run_log_search_view, name="run-log-search"),
    path(f"{RUN}cancel/", runs.run_cancel_view, name="run-cancel"),
    path(f"{RUN}retry/", runs.run_retry_view, name="run-retry"),
    # By database id: the address links handed out earlier (chat, commit statuses, the API's
    # `url`) still use; each moves on to the run's own.
    path("runs/<int:pk>/", runs.run_by_id, name="run-detail"),
    path("runs/<int:pk>/log.txt", runs.run_by_id, {"then": "log.txt"}, name="run-log-by-id"),
    path("projects/<slug:slug>/", projects.project_detail, name="project-detail"),
    path("projects/<slug:slug>/settings/", projects.project_settings, name="project-settings"),
    path(
        "projects/<slug:slug>/rotate-secret/",
        projects.project_rotate_secret,
        name="project-rotate-secret",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/",
        environments.environment_detail,
        name="environment-detail",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/logs.txt",
        app_logs.environment_app_log_download,
        name="environment-app-log-download",
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
    path(
        "projects/<slug:slug>/environments/<str:name>/health/",
        environments.environment_health_view,
        name="environment-health",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/restart/",
        environments.environment_operate_view,
        {"kind": DeploymentKind.RESTART},
        name="environment-restart",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/stop/",
        environments.environment_operate_view,
        {"kind": DeploymentKind.STOP},
        name="environment-stop",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/start/",
        environments.environment_operate_view,
        {"kind": DeploymentKind.START},
        name="environment-start",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/scale/",
        environments.environment_scale_view,
        name="environment-scale",
    ),
    path("deliveries/<int:pk>/replay/", deliveries.delivery_replay_view, name="delivery-replay"),
]
