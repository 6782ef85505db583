"""The housekeeper's pass: it reaps, keeps the proxy, and prunes when pruning is due."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from operations.housekeeping import Housekeeper
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


def test_a_pass_reaps_lost_work_and_prunes_only_once_pruning_is_due(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run, stage = old_logged_run(), silent_stage()
    housekeeper = Housekeeper()

    with django_capture_on_commit_callbacks(execute=False):
        housekeeper.one_pass()

    stage.refresh_from_db()
    assert stage.status == StageStatus.PENDING
    assert LogChunk.objects.filter(run=run).exists()  # pruning is an hour away

    housekeeper._next_prune = 0
    with django_capture_on_commit_callbacks(execute=False):
        housekeeper.one_pass()

    assert not LogChunk.objects.filter(run=run).exists()
