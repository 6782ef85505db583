"""The reaper: settle work whose worker is gone, send again what the broker lost.

One worker at a time runs each half every DOCKYARD_REAP_INTERVAL_SECONDS
(operations.housekeeping): runs on any worker, deployments on a deploy worker. Stages and
deployments are durable jobs: the lost-work logic is written once, in
infrastructure.durable_jobs, and each kind says only what "lost" means for it (pipelines.jobs,
releases.jobs). Safe to run in several workers at once: each item is taken under a row lock
(SKIP LOCKED) and checked again under it, and a task sent twice runs once.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from infrastructure.broker import BrokerError, held_task_ids
from infrastructure.dispatch import QUEUES, queue_release_from_run, release_task_id
from infrastructure.durable_jobs import jobs_reap
from pipelines.jobs import StageJobs
from pipelines.releasing import runs_without_their_release
from pipelines.services import commit_status_enqueue, commit_status_task_id
from releases.jobs import DeploymentJobs, HostDeploymentJobs
from releases.tools import deploy_tools
from webhooks.selectors import commit_statuses_unreported

logger = logging.getLogger(__name__)

# A lost commit status is sent again while it is news; a run's state from days ago is on
# its page, and looking further back would scan every run ever made.
COMMIT_STATUS_RESEND_WITHIN = timedelta(days=1)
RELEASE_RESEND_WITHIN = timedelta(days=1)


@dataclass
class ReapReport:
    """What one pass did, by id."""

    stages_restarted: list[int] = field(default_factory=list)
    stages_failed: list[int] = field(default_factory=list)
    stages_resent: list[int] = field(default_factory=list)
    deployments_resumed: list[int] = field(default_factory=list)
    deployments_abandoned: list[int] = field(default_factory=list)
    deployments_resent: list[int] = field(default_factory=list)
    # Hosts' parts of deployments (HostDeployment ids).
    host_deployments_resumed: list[int] = field(default_factory=list)
    host_deployments_abandoned: list[int] = field(default_factory=list)
    host_deployments_resent: list[int] = field(default_factory=list)
    commit_statuses_resent: list[int] = field(default_factory=list)
    # Passed runs whose release was never made (by run id).
    releases_resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def lost_work_reap(*, now: datetime | None = None) -> ReapReport:
    """Both halves at once (a single worker, the tests)."""
    now = now or timezone.now()
    held = _broker_held()
    report = lost_runs_reap(now=now, held=held)
    deployments = lost_deployments_reap(now=now, held=held)
    report.deployments_resumed = deployments.deployments_resumed
    report.deployments_abandoned = deployments.deployments_abandoned
    report.deployments_resent = deployments.deployments_resent
    report.host_deployments_resumed = deployments.host_deployments_resumed
    report.host_deployments_abandoned = deployments.host_deployments_abandoned
    report.host_deployments_resent = deployments.host_deployments_resent
    return report


def lost_runs_reap(*, now: datetime | None = None, held: set[str] | None = None) -> ReapReport:
    """Stages whose worker or message was lost, and commit statuses never told. Any worker
    may do it: it only sends tasks and moves rows."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.DOCKYARD_LOST_AFTER_SECONDS)
    held = held if held is not None else _broker_held()
    stages = jobs_reap(StageJobs(), now=now, held=held)
    report = ReapReport(
        stages_restarted=stages.restarted,
        stages_failed=stages.given_up,
        stages_resent=stages.resent,
    )
    if held is not None:
        _commit_statuses_resend(now, cutoff, held, report)
    if held is not None:
        for run_id in runs_without_their_release(since=now - RELEASE_RESEND_WITHIN, before=cutoff):
            if release_task_id(run_id) not in held:
                queue_release_from_run(run_id=run_id)
                report.releases_resent.append(run_id)
    if report:
        logger.warning("reaper: %s", report)
    return report


def lost_deployments_reap(
    *, now: datetime | None = None, held: set[str] | None = None
) -> ReapReport:
    """Deployments whose worker or message was lost. On a deploy worker: abandoning one puts
    the proxy back as the database says."""
    now = now or timezone.now()
    held = held if held is not None else _broker_held()
    deployments = jobs_reap(DeploymentJobs(deploy_tools()), now=now, held=held)
    hosts = jobs_reap(HostDeploymentJobs(), now=now, held=held)
    report = ReapReport(
        deployments_resumed=deployments.restarted,
        deployments_abandoned=deployments.given_up,
        deployments_resent=deployments.resent,
        host_deployments_resumed=hosts.restarted,
        host_deployments_abandoned=hosts.given_up,
        host_deployments_resent=hosts.resent,
    )
    if report:
        logger.warning("reaper: %s", report)
    return report


def _broker_held() -> set[str] | None:
    # Read the broker before the database: a message taken and finished in between shows up
    # in the database as no longer waiting, never as lost.
    try:
        return held_task_ids(QUEUES)
    except BrokerError as error:
        logger.warning("reaper: %s; not looking for lost messages this time", error)
        return None


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
