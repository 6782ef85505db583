"""Every Celery task Dockyard sends, the queue it goes on, and one function per hand-over.

Work moves from one step to the next only through the `queue_*` functions below, so "what runs
after the build stage?" is answered by following a call (pipelines.services.run_advance ->
stage_enqueue -> queue_stage). Task names are strings only here: a test checks that each names
a registered task; the workers' queues, the reaper's look into the broker and the test worker
all read QUEUES. Each function sends once the current transaction commits (at once outside
one), so a task never runs before the rows it is about exist.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

BUILDS = "builds"
DEPLOYS = "deploys"
# Reports to forges and chat are small and must not wait behind a long build.
NOTIFY = "notify"
QUEUES: tuple[str, ...] = (BUILDS, DEPLOYS, NOTIFY)
# What a worker consumes by its roles (DOCKYARD_WORKER_ROLES); every worker notifies.
ROLE_QUEUES: dict[str, tuple[str, ...]] = {"build": (BUILDS, NOTIFY), "deploy": (DEPLOYS, NOTIFY)}


def queues_of_roles(roles: Sequence[str]) -> list[str]:
    """The queues a worker with `roles` consumes, in QUEUES order."""
    wanted = {queue for role in roles for queue in ROLE_QUEUES[role]}
    return [queue for queue in QUEUES if queue in wanted]


@dataclass(frozen=True)
class TaskRoute:
    name: str
    queue: str


CHECKOUT = TaskRoute("pipelines.checkout", BUILDS)
CONFIG = TaskRoute("pipelines.config", BUILDS)
BUILD = TaskRoute("pipelines.build", BUILDS)
TEST = TaskRoute("pipelines.test", BUILDS)
PUBLISH = TaskRoute("pipelines.publish", BUILDS)
RUN_CLEANUP = TaskRoute("pipelines.cleanup_run", BUILDS)
DEPENDENTS_REBUILD = TaskRoute("pipelines.rebuild_dependents", BUILDS)
# Makes the release and may create environments (their proxy frontends): next to the proxy.
RELEASE_FROM_RUN = TaskRoute("pipelines.release_from_run", DEPLOYS)
DEPLOY = TaskRoute("releases.deploy", DEPLOYS)
DEPLOY_HOST = TaskRoute("releases.deploy_host", DEPLOYS)
COMMIT_STATUS_REPORT = TaskRoute("webhooks.report_commit_status", NOTIFY)
RUN_NOTIFY = TaskRoute("webhooks.notify_run", NOTIFY)
DEPLOYMENT_NOTIFY = TaskRoute("webhooks.notify_deployment", NOTIFY)
NOTIFICATION_SEND = TaskRoute("webhooks.notify", NOTIFY)

# The stages of a run, by stage name, in the order they run (pipelines.states.STAGE_ORDER).
STAGE_ROUTES: dict[str, TaskRoute] = {
    "checkout": CHECKOUT,
    "config": CONFIG,
    "build": BUILD,
    "test": TEST,
    "publish": PUBLISH,
}
ROUTES: tuple[TaskRoute, ...] = (
    *STAGE_ROUTES.values(),
    RUN_CLEANUP,
    DEPENDENTS_REBUILD,
    RELEASE_FROM_RUN,
    DEPLOY,
    DEPLOY_HOST,
    COMMIT_STATUS_REPORT,
    RUN_NOTIFY,
    DEPLOYMENT_NOTIFY,
    NOTIFICATION_SEND,
)


def celery_task_routes() -> dict[str, dict[str, str]]:
    """Celery's task_routes, for what Celery sends itself (a task's retry)."""
    return {route.name: {"queue": route.queue} for route in ROUTES}


def queue_stage(*, stage_name: str, run_id: int, task_id: str) -> None:
    """Run one stage of a run (pipelines.tasks)."""
    _send(STAGE_ROUTES[stage_name], [run_id], task_id=task_id)


def queue_run_cleanup(*, run_id: int) -> None:
    """Remove what a finished run left on the workers (containers, workspace)."""
    _send(RUN_CLEANUP, [run_id])


def queue_dependents_rebuild(*, run_id: int) -> None:
    """Rebuild the projects that build on what this run published."""
    _send(DEPENDENTS_REBUILD, [run_id])


def release_task_id(run_id: int) -> str:
    """The release hand-over's task id, the same for every sending: the reaper can ask the
    broker whether it still holds it."""
    return f"release-from-run-{run_id}"


def queue_release_from_run(*, run_id: int) -> None:
    """Make a release of a passed run and auto-deploy it where its rules say."""
    _send(RELEASE_FROM_RUN, [run_id], task_id=release_task_id(run_id))


def queue_deployment(*, deployment_id: int, task_id: str) -> None:
    """Carry a deployment through its steps (releases.tasks)."""
    _send(DEPLOY, [deployment_id], task_id=task_id)


def queue_host_deployment(*, host_deployment_id: int, task_id: str) -> None:
    """Carry one host's part of a deployment through its steps (releases.tasks)."""
    _send(DEPLOY_HOST, [host_deployment_id], task_id=task_id)


def queue_commit_status_report(*, run_id: int, event_id: int, task_id: str) -> None:
    """Tell the forge the run's state as of `event_id`."""
    _send(COMMIT_STATUS_REPORT, [run_id, event_id], task_id=task_id)


def queue_run_notifications(*, run_id: int) -> None:
    """Tell chat that a run finished."""
    _send(RUN_NOTIFY, [run_id])


def queue_deployment_notifications(*, deployment_id: int) -> None:
    """Tell chat that a deployment finished."""
    _send(DEPLOYMENT_NOTIFY, [deployment_id])


def queue_notification(*, endpoint_id: int, payload: dict[str, Any]) -> None:
    """Post one notification to one chat endpoint."""
    _send(NOTIFICATION_SEND, [endpoint_id, payload])


def _send(route: TaskRoute, args: Sequence[Any], *, task_id: str | None = None) -> None:
    # Imported here: config.celery reads this module's routes when it is set up.
    from config.celery import app

    transaction.on_commit(
        lambda: app.send_task(route.name, args=list(args), task_id=task_id, queue=route.queue)
    )
