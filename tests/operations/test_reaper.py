"""The reaper, one pass at a time, against the real database and the real broker (Redis)."""

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import transaction
from django.utils import timezone

from config.celery import app as celery_app
from infrastructure.broker import held_task_ids
from infrastructure.dispatch import QUEUES
from operations.reaper import lost_work_reap
from pipelines.models import PipelineRun, RunEvent, Stage
from pipelines.services import commit_status_task_id, run_advance
from pipelines.states import RunStatus, StageStatus
from projects.models import Project
from tests.factories import make_project, make_run
from webhooks.models import CommitStatusReport
from webhooks.tasks import report_commit_status

pytestmark = pytest.mark.django_db

# A Redis database no worker of the suite listens on: messages put there stay put.
QUIET_BROKER_DB = 15


@pytest.fixture
def quiet_broker(settings: Any) -> Iterator[redis.Redis]:
    url = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + f"/{QUIET_BROKER_DB}"
    settings.CELERY_BROKER_URL = url
    settings.DOCKYARD_LOST_AFTER_SECONDS = 30
    settings.DOCKYARD_ATTEMPTS = 2
    client = redis.Redis.from_url(url)
    client.delete(*QUEUES, "unacked")
    yield client
    client.delete(*QUEUES, "unacked")
    client.close()


def message(task_id: str) -> bytes:
    """A task message as Celery's Redis transport stores it (the fields the reaper reads)."""
    return json.dumps(
        {"body": "", "headers": {"id": task_id, "task": "pipelines.config"}, "properties": {}}
    ).encode()


def config_stage_of_a_running_run(**fields: Any) -> Stage:
    """The config stage of a run whose checkout succeeded, with `fields` set."""
    run = make_run(make_project())
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    Stage.objects.filter(run=run, name="checkout").update(status=StageStatus.SUCCEEDED)
    Stage.objects.filter(run=run, name="config").update(**fields)
    return Stage.objects.select_related("run").get(run=run, name="config")


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


def reap(django_capture_on_commit_callbacks: Callable[..., Any]) -> Any:
    # The tasks it sends go out on commit; not executing them keeps them off the broker.
    with django_capture_on_commit_callbacks(execute=False):
        return lost_work_reap()


def test_a_running_stage_whose_heartbeat_went_silent_is_sent_again(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    stage = config_stage_of_a_running_run(
        status=StageStatus.RUNNING,
        started_at=ago(120),
        heartbeat_at=ago(60),
        task_id="lost-task",
        worker="host:1234",
        attempts=1,
    )

    report = reap(django_capture_on_commit_callbacks)

    stage.refresh_from_db()
    assert report.stages_restarted == [stage.pk]
    assert stage.status == StageStatus.PENDING
    assert stage.task_id not in {"", "lost-task"}
    event = stage.events.latest("id")
    assert "its worker host:1234 stopped answering for 30s" in event.reason
    assert "attempt 2 of 2" in event.reason
    assert PipelineRun.objects.get(pk=stage.run_id).status == RunStatus.RUNNING


def test_a_stage_that_lost_its_worker_as_often_as_allowed_fails_its_run_with_the_reason(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    stage = config_stage_of_a_running_run(
        status=StageStatus.RUNNING, started_at=ago(120), heartbeat_at=ago(60), attempts=2
    )

    report = reap(django_capture_on_commit_callbacks)

    run = PipelineRun.objects.get(pk=stage.run_id)
    assert report.stages_failed == [stage.pk]
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "config"
    assert "lost 2 times, not trying again" in run.failure_reason
    assert set(run.stages.filter(position__gt=stage.position).values_list("status", flat=True)) == {
        StageStatus.SKIPPED
    }


def test_a_stage_whose_worker_still_beats_is_left_alone(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    stage = config_stage_of_a_running_run(
        status=StageStatus.RUNNING, started_at=ago(600), heartbeat_at=ago(2), attempts=1
    )

    report = reap(django_capture_on_commit_callbacks)

    stage.refresh_from_db()
    assert not report
    assert stage.status == StageStatus.RUNNING


def test_a_pending_stage_whose_message_the_broker_lost_is_sent_again(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    stage = config_stage_of_a_running_run(task_id="gone-with-redis", queued_at=ago(60))

    report = reap(django_capture_on_commit_callbacks)

    stage.refresh_from_db()
    assert report.stages_resent == [stage.pk]
    assert stage.task_id != "gone-with-redis"
    assert stage.events.filter(reason__contains="sent again").exists()


def test_a_stage_handed_over_to_a_worker_that_died_before_claiming_it_is_sent_to_the_broker(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    stage = config_stage_of_a_running_run()
    run = PipelineRun.objects.get(pk=stage.run_id)
    with transaction.atomic():
        locked = PipelineRun.objects.select_for_update().get(pk=run.pk)
        handed = run_advance(run=locked, carry_on=True)
    assert handed is not None and handed.stage_name == "config"
    Stage.objects.filter(pk=stage.pk).update(queued_at=ago(60))

    report = reap(django_capture_on_commit_callbacks)

    stage.refresh_from_db()
    assert report.stages_resent == [stage.pk]
    assert stage.task_id != handed.task_id


@pytest.mark.parametrize("where", ["waiting in its queue", "taken by a worker"])
def test_a_pending_stage_whose_message_the_broker_holds_is_not_sent_twice(
    where: str,
    quiet_broker: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    task_id = str(uuid.uuid4())
    if where == "waiting in its queue":
        quiet_broker.lpush("builds", message(task_id))
    else:
        quiet_broker.hset("unacked", "tag-1", json.dumps([json.loads(message(task_id)), "", "b"]))
    stage = config_stage_of_a_running_run(task_id=task_id, queued_at=ago(600))

    report = reap(django_capture_on_commit_callbacks)

    stage.refresh_from_db()
    assert not report
    assert stage.task_id == task_id


def test_a_pending_stage_sent_a_moment_ago_is_not_taken_for_lost(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    # Its message may still be on its way: the transaction that queued it just committed.
    config_stage_of_a_running_run(task_id="on-its-way", queued_at=ago(1))

    assert not reap(django_capture_on_commit_callbacks)


def test_the_broker_reports_the_ids_of_waiting_and_taken_messages(
    quiet_broker: redis.Redis,
) -> None:
    quiet_broker.lpush("builds", message("waiting"))
    quiet_broker.lpush("deploys\x06\x163", message("waiting-with-priority"))
    quiet_broker.hset("unacked", "tag", json.dumps([json.loads(message("taken")), "", "b"]))

    try:
        assert held_task_ids(["builds", "deploys"]) == {
            "waiting",
            "waiting-with-priority",
            "taken",
        }
    finally:
        quiet_broker.delete("deploys\x06\x163")


def test_a_broker_that_cannot_be_read_stops_only_the_lost_message_search(
    settings: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.DOCKYARD_LOST_AFTER_SECONDS = 30
    settings.DOCKYARD_ATTEMPTS = 2
    silent = config_stage_of_a_running_run(
        status=StageStatus.RUNNING, started_at=ago(120), heartbeat_at=ago(60), attempts=1
    )
    config_stage_of_a_running_run(task_id="unknown", queued_at=ago(600))

    report = reap(django_capture_on_commit_callbacks)

    assert report.stages_restarted == [silent.pk]
    assert report.stages_resent == []


# Commit statuses ----------------------------------------------------------------------------


def reporting_run(*states: str, at: Any = None, **project_fields: str) -> tuple[Any, list[int]]:
    """A run of a project that reports to a forge (which nothing answers), with run-level
    events into each of `states`, made `at` (long enough ago to be missed by default)."""
    project = make_project()
    Project.objects.filter(pk=project.pk).update(
        forge_token="forge-token", forge_repository="acme/web", forge_api_url="http://127.0.0.1:1"
    )
    Project.objects.filter(pk=project.pk).update(**project_fields)
    run = make_run(project)
    previous, events = "", []
    for state in states:
        events.append(RunEvent.objects.create(run=run, from_status=previous, to_status=state).pk)
        previous = state
    RunEvent.objects.filter(run=run).update(at=at if at is not None else ago(120))
    return run, events


def test_a_commit_status_the_broker_lost_is_sent_again_for_the_newest_state_only(
    quiet_broker: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, events = reporting_run(RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    # Recorded, not sent: this process's Celery app stays on the suite's broker, not the quiet
    # one (tests/operations/test_faults.py sees the report reach a forge).
    sent: list[tuple[str, list[object], str | None, str]] = []
    monkeypatch.setattr(
        celery_app,
        "send_task",
        lambda name, args, task_id, queue: sent.append((name, args, task_id, queue)),
    )

    with django_capture_on_commit_callbacks(execute=True):
        report = lost_work_reap()

    assert report.commit_statuses_resent == [run.pk]
    assert sent == [
        (
            "webhooks.report_commit_status",
            [run.pk, events[-1]],
            commit_status_task_id(run_id=run.pk, event_id=events[-1]),
            "notify",
        )
    ]


@pytest.mark.parametrize(
    "why",
    [
        "its message is in the broker",
        "the forge was told",
        "its retries ran out",
        "the project reports to no forge",
        "it is a moment old",
        "a newer state is on its way",
    ],
)
def test_a_commit_status_is_not_sent_again_when(
    why: str, quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    if why == "the project reports to no forge":
        run, events = reporting_run(RunStatus.SUCCEEDED, forge_token="")
    elif why == "it is a moment old":
        run, events = reporting_run(RunStatus.SUCCEEDED, at=ago(1))
    else:
        run, events = reporting_run(RunStatus.QUEUED, RunStatus.SUCCEEDED)
    newest = events[-1]
    if why == "its message is in the broker":
        quiet_broker.lpush("notify", message(commit_status_task_id(run_id=run.pk, event_id=newest)))
    elif why == "the forge was told":
        CommitStatusReport.objects.create(run=run, last_event_id=newest, last_state="success")
    elif why == "its retries ran out":
        CommitStatusReport.objects.create(run=run, gave_up_event_id=newest)
    elif why == "a newer state is on its way":
        RunEvent.objects.create(run=run, from_status=RunStatus.SUCCEEDED, to_status="x")

    assert reap(django_capture_on_commit_callbacks).commit_statuses_resent == []


def test_a_report_out_of_retries_is_marked_given_up_and_left_alone(
    quiet_broker: redis.Redis, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    run, events = reporting_run(RunStatus.SUCCEEDED)

    outcome = report_commit_status.apply(
        args=[run.pk, events[-1]], retries=report_commit_status.max_retries
    )

    assert outcome.successful()
    report = CommitStatusReport.objects.get(run=run)
    assert report.gave_up_event_id == events[-1]
    assert report.last_state == ""
    assert "127.0.0.1:1" in report.last_error
    assert reap(django_capture_on_commit_callbacks).commit_statuses_resent == []
