"""The reaper: settle work whose worker is gone, send again what the broker lost.

Every worker runs it every DOCKYARD_REAP_INTERVAL_SECONDS (operations.housekeeping). It is
safe to run in several workers at once: each item is taken under a row lock (SKIP LOCKED)
and checked again under it, and a task sent twice runs once (the stage or deployment claim
tells the owner from a duplicate).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from infrastructure.broker import BrokerError, held_task_ids
from infrastructure.dispatch import QUEUES
from pipelines.models import PipelineRun, RunEvent, Stage
from pipelines.services import (
    commit_status_enqueue,
    commit_status_task_id,
    run_fail,
    stage_enqueue,
    stage_transition,
)
from pipelines.states import RunStatus, StageStatus
from releases.models import Deployment, DeploymentEvent
from releases.services import deployment_abandon, deployment_enqueue
from releases.states import DEPLOYMENT_FINAL_STATES
from webhooks.selectors import commit_statuses_unreported

logger = logging.getLogger(__name__)

# A lost commit status is sent again while it is news; a run's state from days ago is on
# its page, and looking further back would scan every run ever made.
COMMIT_STATUS_RESEND_WITHIN = timedelta(days=1)
UNFINISHED_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass
class ReapReport:
    """What one pass did, by id."""

    stages_restarted: list[int] = field(default_factory=list)
    stages_failed: list[int] = field(default_factory=list)
    stages_resent: list[int] = field(default_factory=list)
    deployments_resumed: list[int] = field(default_factory=list)
    deployments_abandoned: list[int] = field(default_factory=list)
    deployments_resent: list[int] = field(default_factory=list)
    commit_statuses_resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def lost_work_reap(*, now: datetime | None = None) -> ReapReport:
    now = now or timezone.now()
    lost_after = settings.DOCKYARD_LOST_AFTER_SECONDS
    cutoff = now - timedelta(seconds=lost_after)
    report = ReapReport()
    # Read the broker before the database: a message taken and finished in between shows
    # up in the database as no longer pending, never as lost.
    try:
        held: set[str] | None = held_task_ids(QUEUES)
    except BrokerError as error:
        logger.warning("reaper: %s; not looking for lost messages this time", error)
        held = None
    for stage_id in _silent_stage_ids(cutoff):
        _stage_settle_lost(stage_id, cutoff, lost_after, report)
    for deployment_id in _silent_deployment_ids(cutoff):
        _deployment_settle_lost(deployment_id, cutoff, lost_after, report)
    if held is not None:
        for stage_id in _waiting_stage_ids(cutoff, held):
            _stage_resend(stage_id, cutoff, held, report)
        for deployment_id in _waiting_deployment_ids(cutoff, held):
            _deployment_resend(deployment_id, cutoff, held, report)
        _commit_statuses_resend(now, cutoff, held, report)
    if report:
        logger.warning("reaper: %s", report)
    return report


def _silent(cutoff: datetime) -> Q:
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)


def _silent_stage_ids(cutoff: datetime) -> list[int]:
    return list(
        Stage.objects.filter(status=StageStatus.RUNNING, run__status__in=UNFINISHED_RUN)
        .filter(_silent(cutoff))
        .values_list("pk", flat=True)
    )


def _stage_settle_lost(
    stage_id: int, cutoff: datetime, lost_after: float, report: ReapReport
) -> None:
    with transaction.atomic():
        stage = Stage.objects.select_for_update(skip_locked=True).filter(pk=stage_id).first()
        if stage is None or stage.status != StageStatus.RUNNING:
            return
        if not Stage.objects.filter(pk=stage_id).filter(_silent(cutoff)).exists():
            return
        run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=stage.run_id)
        gone = f"its worker {stage.worker or '(unknown)'} stopped answering for {lost_after:g}s"
        if stage.attempts >= settings.DOCKYARD_ATTEMPTS:
            run_fail(
                run=run,
                stage=stage,
                reason=f"{gone}; lost {stage.attempts} times, not trying again",
            )
            report.stages_failed.append(stage_id)
            return
        stage_transition(
            stage=stage,
            to=StageStatus.PENDING,
            reason=f"{gone}; starting it again "
            f"(attempt {stage.attempts + 1} of {settings.DOCKYARD_ATTEMPTS})",
        )
        stage_enqueue(run, stage.name)
        report.stages_restarted.append(stage_id)


def _waiting_stage_ids(cutoff: datetime, held: set[str]) -> list[int]:
    waiting = Stage.objects.filter(
        status=StageStatus.PENDING, run__status__in=UNFINISHED_RUN, queued_at__lt=cutoff
    ).exclude(task_id="")
    return [pk for pk, task_id in waiting.values_list("pk", "task_id") if task_id not in held]


def _stage_resend(stage_id: int, cutoff: datetime, held: set[str], report: ReapReport) -> None:
    with transaction.atomic():
        stage = Stage.objects.select_for_update(skip_locked=True).filter(pk=stage_id).first()
        if (
            stage is None
            or stage.status != StageStatus.PENDING
            or stage.task_id in held
            or stage.queued_at is None
            or stage.queued_at >= cutoff
        ):
            return
        run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=stage.run_id)
        if run.status not in UNFINISHED_RUN:
            return
        RunEvent.objects.create(
            run=run,
            stage=stage,
            from_status=stage.status,
            to_status=stage.status,
            reason="the broker no longer holds its task (restarted?); sent again",
        )
        stage_enqueue(run, stage.name)
        report.stages_resent.append(stage_id)


def _silent_deployment_ids(cutoff: datetime) -> list[int]:
    return list(
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES)
        .filter(heartbeat_at__lt=cutoff)
        .values_list("pk", flat=True)
    )


def _deployment_settle_lost(
    deployment_id: int, cutoff: datetime, lost_after: float, report: ReapReport
) -> None:
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(skip_locked=True)
            .filter(pk=deployment_id, heartbeat_at__lt=cutoff)
            .exclude(status__in=DEPLOYMENT_FINAL_STATES)
            .first()
        )
        if deployment is None:
            return
        gone = (
            f"its worker {deployment.worker or '(unknown)'} stopped answering for "
            f"{lost_after:g}s while {deployment.status}"
        )
        if deployment.attempts < settings.DOCKYARD_ATTEMPTS:
            DeploymentEvent.objects.create(
                deployment=deployment,
                from_status=deployment.status,
                to_status=deployment.status,
                detail=f"{gone}; resuming it (attempt {deployment.attempts + 1} of "
                f"{settings.DOCKYARD_ATTEMPTS})",
            )
            deployment_enqueue(deployment)
            report.deployments_resumed.append(deployment_id)
            return
    # Out of the lock: abandoning moves the deployment and the proxy under their own locks.
    deployment_abandon(
        deployment=deployment,
        reason=f"{gone}; lost {deployment.attempts} times, not trying again",
    )
    report.deployments_abandoned.append(deployment_id)


def _waiting_deployment_ids(cutoff: datetime, held: set[str]) -> list[int]:
    waiting = (
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES)
        .filter(heartbeat_at__isnull=True, queued_at__lt=cutoff)
        .exclude(task_id="")
    )
    return [pk for pk, task_id in waiting.values_list("pk", "task_id") if task_id not in held]


def _deployment_resend(
    deployment_id: int, cutoff: datetime, held: set[str], report: ReapReport
) -> None:
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(skip_locked=True)
            .filter(pk=deployment_id, heartbeat_at__isnull=True, queued_at__lt=cutoff)
            .exclude(status__in=DEPLOYMENT_FINAL_STATES)
            .first()
        )
        if deployment is None or deployment.task_id in held:
            return
        DeploymentEvent.objects.create(
            deployment=deployment,
            from_status=deployment.status,
            to_status=deployment.status,
            detail="the broker no longer holds its task (restarted?); sent again",
        )
        deployment_enqueue(deployment)
        report.deployments_resent.append(deployment_id)


def _commit_statuses_resend(
    now: datetime, cutoff: datetime, held: set[str], report: ReapReport
) -> None:
    # No lock: a report sent twice is told once (commit_status_report locks the run's report
    # and refuses a state it has already told).
    for run_id, event_id in commit_statuses_unreported(
        since=now - COMMIT_STATUS_RESEND_WITHIN, before=cutoff
    ):
        if commit_status_task_id(run_id=run_id, event_id=event_id) in held:
            continue
        commit_status_enqueue(run_id=run_id, event_id=event_id)
        report.commit_statuses_resent.append(run_id)
