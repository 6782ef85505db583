"""Deployments as durable jobs (infrastructure.durable_jobs): the coordinator and each host's
part. What the reaper does with one whose worker was lost (resume it at its step, or end it
leaving every host as the database says) and with one whose message the broker lost (send it
again)."""

from django.conf import settings
from django.db.models import QuerySet

from releases.executor import deployment_abandon, host_deployment_abandon
from releases.models import Deployment, DeploymentEvent, HostDeployment
from releases.sending import deployment_enqueue, host_deployment_enqueue
from releases.states import (
    DEPLOYMENT_CARRIED_STATES,
    HOST_ACTIVE_STATES,
    DeploymentStatus,
    HostStatus,
)
from releases.tools import DeployTools


class DeploymentJobs:
    """The coordinators: carried while they prepare, release, revert or finish; while the
    deployment rolls, its hosts' jobs are the ones to watch."""

    model = Deployment

    def __init__(self, tools: DeployTools) -> None:
        self.tools = tools

    def carried(self) -> QuerySet[Deployment]:
        return Deployment.objects.filter(
            status__in=DEPLOYMENT_CARRIED_STATES, heartbeat_at__isnull=False
        )

    def waiting(self) -> QuerySet[Deployment]:
        return Deployment.objects.filter(
            status__in=DEPLOYMENT_CARRIED_STATES, heartbeat_at__isnull=True
        )

    def restart(self, job: Deployment, *, why: str, attempt: int) -> None:
        # Each step is safe to repeat: the next worker resumes at the one it was in.
        _note(
            job,
            None,
            f"{why} while {job.status}; resuming it (attempt {attempt} of "
            f"{settings.DOCKYARD_ATTEMPTS})",
        )
        deployment_enqueue(job)

    def give_up(self, job: Deployment, *, why: str, attempts: int) -> None:
        deployment_abandon(
            deployment=job,
            reason=f"{why} while {job.status}; lost {attempts} times, not trying again",
            tools=self.tools,
        )

    def resend(self, job: Deployment) -> None:
        _note(job, None, "the broker no longer holds its task (restarted?); sent again")
        deployment_enqueue(job)


class HostDeploymentJobs:
    """Each host's part of a rolling deployment."""

    model = HostDeployment

    def carried(self) -> QuerySet[HostDeployment]:
        return HostDeployment.objects.filter(
            status__in=HOST_ACTIVE_STATES, heartbeat_at__isnull=False
        )

    def waiting(self) -> QuerySet[HostDeployment]:
        # Sent and not yet taken, while its deployment still rolls (a host whose deployment
        # reverted meanwhile has nothing to wait for).
        return HostDeployment.objects.filter(
            status=HostStatus.WAITING,
            heartbeat_at__isnull=True,
            deployment__status=DeploymentStatus.ROLLING,
        )

    def restart(self, job: HostDeployment, *, why: str, attempt: int) -> None:
        _note(
            job.deployment,
            job,
            f"{why} while {job.status}; resuming it (attempt {attempt} "
            f"of {settings.DOCKYARD_ATTEMPTS})",
        )
        host_deployment_enqueue(job)

    def give_up(self, job: HostDeployment, *, why: str, attempts: int) -> None:
        host_deployment_abandon(
            target=job, reason=f"{why} while {job.status}; lost {attempts} times"
        )

    def resend(self, job: HostDeployment) -> None:
        _note(job.deployment, job, "the broker no longer holds its task (restarted?); sent again")
        host_deployment_enqueue(job)


def _note(deployment: Deployment, target: HostDeployment | None, detail: str) -> None:
    status = target.status if target is not None else deployment.status
    DeploymentEvent.objects.create(
        deployment=deployment,
        host_id=target.host_id if target is not None else None,
        from_status=status,
        to_status=status,
        detail=detail,
    )
