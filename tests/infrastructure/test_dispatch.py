"""The dispatch table names every task Dockyard sends, each a task a worker has registered."""

import pytest
from django.db import transaction

from config.celery import app
from infrastructure import dispatch
from pipelines.states import STAGE_ORDER


def dockyard_tasks() -> set[str]:
    app.loader.import_default_modules()
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_route_names_a_registered_task() -> None:
    registered = dockyard_tasks()
    missing = {route.name for route in dispatch.ROUTES} - registered
    assert not missing, f"routed but not registered: {missing}"


def test_every_registered_task_has_a_route() -> None:
    unrouted = dockyard_tasks() - {route.name for route in dispatch.ROUTES}
    assert not unrouted, f"registered but not in infrastructure.dispatch: {unrouted}"


def test_each_stage_has_a_route_in_the_order_the_stages_run() -> None:
    assert list(dispatch.STAGE_ROUTES) == list(STAGE_ORDER)


def test_every_route_goes_to_a_queue_workers_consume() -> None:
    assert {route.queue for route in dispatch.ROUTES} == set(dispatch.QUEUES)
    assert [queue.name for queue in app.conf.task_queues] == list(dispatch.QUEUES)


@pytest.mark.django_db(transaction=True)
def test_a_hand_over_is_sent_only_once_its_transaction_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, list[object], str | None]] = []
    monkeypatch.setattr(
        app, "send_task", lambda name, args, task_id, queue: sent.append((name, args, queue))
    )
    with transaction.atomic():
        dispatch.queue_stage(stage_name="build", run_id=7, task_id="t-1")
        assert sent == []
    assert sent == [("pipelines.build", [7], "builds")]


def test_a_worker_consumes_the_queues_of_its_roles_and_every_worker_notifies() -> None:
    assert dispatch.queues_of_roles(("build",)) == [dispatch.BUILDS, dispatch.NOTIFY]
    assert dispatch.queues_of_roles(("deploy",)) == [dispatch.DEPLOYS, dispatch.NOTIFY]
    assert dispatch.queues_of_roles(("build", "deploy")) == list(dispatch.QUEUES)
