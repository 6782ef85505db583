"""Carrying deployments in tests as the workers would, without a broker."""

from releases.executor import deployment_execute, host_deployment_execute
from releases.models import Deployment, HostDeployment
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentStatus, HostStatus
from releases.tools import DeployTools


def drive(deployment: Deployment, tools: DeployTools) -> tuple[Deployment, list[list[str]]]:
    """Carry the deployment as workers would: the coordinator's task, then each batch's host
    jobs as they are sent, until it ends. Also returns the hosts of each batch, in order."""
    batches: list[list[str]] = []
    for _ in range(20):
        deployment.refresh_from_db()
        if deployment.status in DEPLOYMENT_FINAL_STATES:
            return deployment, batches
        if deployment.status != DeploymentStatus.ROLLING:
            deployment_execute(deployment_id=deployment.pk, tools=tools)
            continue
        sent = list(
            HostDeployment.objects.filter(deployment=deployment, status=HostStatus.WAITING)
            .exclude(task_id="")
            .select_related("host")
        )
        assert sent, "a rolling deployment has a batch sent"
        batches.append([target.host.name for target in sent])
        for target in sent:
            host_deployment_execute(host_deployment_id=target.pk, tools=tools)
    raise AssertionError(f"deployment {deployment.pk} did not end")
