"""Start-up reconciliation: what a worker puts right before it takes work.

A worker that died (or a machine that rebooted) can leave containers of work that has since
ended, and a proxy that lost its runtime state. The database is the truth for both.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings

from infrastructure.docker_engine import DockerEngine
from pipelines.models import PipelineRun
from pipelines.states import RUN_FINAL_STATES
from releases.models import Deployment
from releases.proxy import proxies_reconcile
from releases.states import DeploymentStatus
from releases.tools import deploy_tools

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    containers_removed: list[str] = field(default_factory=list)


def startup_reconcile(roles: tuple[str, ...] | None = None) -> ReconcileReport:
    """Before a worker takes work: this host's containers of work that is over go, and on a
    deploy worker every host's proxy is put back as the database says."""
    roles = settings.DOCKYARD_WORKER_ROLES if roles is None else roles
    report = ReconcileReport(containers_removed=finished_work_containers_remove())
    if "deploy" in roles:
        proxies_reconcile(deploy_tools())
    return report


def finished_work_containers_remove() -> list[str]:
    """Remove the containers on this host's engine whose run or deployment is over (see
    `_over`); their ids."""
    removed = []
    with DockerEngine(settings.DOCKER_HOST) as engine:
        for labels in engine.managed_containers():
            why = _over(labels)
            if why:
                engine.remove_container(labels["id"])
                removed.append(labels["id"])
                logger.warning("removed container %s: %s", labels["id"][:12], why)
    return removed


def _over(labels: dict[str, str]) -> str:
    """Why the container's work is over (it should go), or "" if it may still be needed."""
    if "dockyard.run" in labels:
        run_id = _number(labels["dockyard.run"])
        status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if status is None:
            return f"run {labels['dockyard.run']} no longer exists"
        if status in RUN_FINAL_STATES:
            return f"run {run_id} is {status}"
        return ""
    if "dockyard.deployment" in labels:
        deployment_id = _number(labels["dockyard.deployment"])
        status = (
            Deployment.objects.filter(pk=deployment_id).values_list("status", flat=True).first()
        )
        if status is None:
            return f"deployment {labels['dockyard.deployment']} no longer exists"
        if status == DeploymentStatus.FAILED:
            # A failed deployment's container never took traffic; a succeeded one's is live
            # or kept for rollback (retention prunes those beyond the kept few).
            return f"deployment {deployment_id} failed"
    return ""


def _number(text: str) -> int:
    return int(text) if text.isdigit() else -1
