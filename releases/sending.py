"""Sending a deployment's task, and each host's part's: durable jobs, their task ids and when
they went noted (infrastructure.durable_jobs), so that a lost message is found and sent again.

Apart from releases.executor on purpose: the web process sends deployments (promote, rollback,
chat-ops) and must not load the engine and ssh adapters only the executor needs (about 40 MB
in each web process).
"""

from infrastructure import dispatch
from infrastructure.durable_jobs import job_enqueue
from releases.models import Deployment, HostDeployment


def deployment_enqueue(deployment: Deployment, *, new_phase: bool = False) -> None:
    """Send the coordinator's task once the transaction commits (a durable job: its id and
    when it went are noted, so a lost message is found and sent again)."""
    deployment_id = deployment.pk
    job_enqueue(
        deployment,
        send=lambda task_id: dispatch.queue_deployment(
            deployment_id=deployment_id, task_id=task_id
        ),
        new_phase=new_phase,
    )


def host_deployment_enqueue(host_deployment: HostDeployment) -> None:
    host_deployment_id = host_deployment.pk
    job_enqueue(
        host_deployment,
        send=lambda task_id: dispatch.queue_host_deployment(
            host_deployment_id=host_deployment_id, task_id=task_id
        ),
    )
