"""Carrying deployments in tests as the workers would, without a broker."""

from releases.executor import deployment_execute, host_deployment_execute
from releases.models import Deployment, HostDeployment
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentStatus, HostStatus
from releases.tools import DeployTools


def drive(deployment: Deployment, tools: DeployTools) -> tuple[Deployment, list[list[str]]]:
    """Carry the deployment as workers would until it ends: the coordinator's task (which
    carries the hosts' batches itself), and any host job sent to the broker (a lost worker's,
    resent). Also returns the hosts of each batch that began, in order."""
    for _ in range(20):
        deployment.refresh_from_db()
        if deployment.status in DEPLOYMENT_FINAL_STATES:
            return deployment, batches_of(deployment)
        if deployment.status != DeploymentStatus.ROLLING:
            deployment_execute(deployment_id=deployment.pk, tools=tools)
            continue
        sent = list(
            HostDeployment.objects.filter(deployment=deployment, status=HostStatus.WAITING).exclude(
                task_id=""
            )
        )
        assert sent, "a rolling deployment nobody carries has a batch sent"
        for target in sent:
            host_deployment_execute(host_deployment_id=target.pk, tools=tools)
    raise AssertionError(f"deployment {deployment.pk} did not end")


def batches_of(deployment: Deployment) -> list[list[str]]:
    """The hosts of each batch that began, batch by batch, each batch's in position order."""
    began = (
        HostDeployment.objects.filter(deployment=deployment)
        .exclude(status=HostStatus.WAITING)
        .order_by("batch", "position")
        .values_list("batch", "host__name")
    )
    batches: dict[int, list[str]] = {}
    for batch, name in began:
        batches.setdefault(batch, []).append(name)
    return list(batches.values())
