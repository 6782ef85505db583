"""The housekeeper's pass: it reaps, keeps the proxy, and prunes when pruning is due."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from infrastructure.cluster_locks import lock_key
from infrastructure.heartbeats import worker_name
from operations.housekeeping import Housekeeper
from operations.models import ChoreRecord
from pipelines.models import LogChunk, PipelineRun, Stage
from pipelines.states import RunStatus, StageStatus
from tests.factories import make_project, make_run

pytestmark = [pytest.mark.docker, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def housekeeping_settings(settings: Any) -> None:
    settings.DOCKYARD_LOG_RETENTION_DAYS = 1
    settings.DOCKYARD_LOG_RETENTION_RUNS = 0
    settings.DOCKYARD_PRUNE_INTERVAL_SECONDS = 3600
    settings.DOCKYARD_LOST_AFTER_SECONDS = 30


def old_logged_run() -> PipelineRun:
    run = make_run(make_project())
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(days=3)
    )
    LogChunk.objects.create(run=run, stage=run.stages.get(name="build"), seq=1, text="old\n")
    return run


def silent_stage() -> Stage:
    run = make_run(make_project())
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    long_ago = timezone.now() - timedelta(minutes=5)
    Stage.objects.filter(run=run, name="checkout").update(
        status=StageStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago, attempts=1
    )
    return Stage.objects.get(run=run, name="checkout")


def test_a_pass_reaps_lost_work_and_prunes_only_when_no_worker_pruned_for_a_period(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run, stage = old_logged_run(), silent_stage()
    housekeeper = Housekeeper(roles=("build", "deploy"))

    with django_capture_on_commit_callbacks(execute=False):
        ran = housekeeper.one_pass()

    stage.refresh_from_db()
    assert stage.status == StageStatus.PENDING
    assert "reap runs" in ran and "prune logs and candidates" in ran  # never pruned before
    assert not LogChunk.objects.filter(run=run).exists()

    # Pruned a moment ago, by this worker or another: not again before the period is over.
    later = old_logged_run()
    with django_capture_on_commit_callbacks(execute=False):
        ran = housekeeper.one_pass()
    assert "prune logs and candidates" not in ran
    assert LogChunk.objects.filter(run=later).exists()

    ChoreRecord.objects.filter(name="prune logs and candidates").update(
        last_started_at=timezone.now() - timedelta(hours=2)
    )
    with django_capture_on_commit_callbacks(execute=False):
        ran = housekeeper.one_pass()
    assert "prune logs and candidates" in ran
    assert not LogChunk.objects.filter(run=later).exists()
    record = ChoreRecord.objects.get(name="prune logs and candidates")
    assert record.last_worker == worker_name()
    assert record.last_error == ""


def test_a_build_worker_keeps_no_proxy_and_reaps_no_deployments() -> None:
    names = {chore.name for chore in Housekeeper(roles=("build",)).chores}
    assert "keep the proxies" not in names
    assert "reap deployments" not in names
    assert {"reap runs", "sweep finished work", "prune this host"} <= names
    assert "keep the proxies" in {chore.name for chore in Housekeeper(roles=("deploy",)).chores}


@pytest.mark.django_db(transaction=True)
def test_an_installation_chore_is_skipped_while_another_worker_holds_its_lock() -> None:
    housekeeper = Housekeeper(roles=("build",))
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key("chore:reap runs")])
        assert "reap runs" not in housekeeper.one_pass()
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key("chore:reap runs")])
        assert "reap runs" in housekeeper.one_pass()
    finally:
        other.close()
