"""Deployments as durable jobs (infrastructure.durable_jobs): what the reaper does with one
whose worker was lost (resume it at its step, or abandon it leaving the proxy as the database
says) and with one whose message the broker lost (send it again)."""

from django.conf import settings
from django.db.models import QuerySet

from releases.executor import deployment_abandon, deployment_enqueue
from releases.models import Deployment, DeploymentEvent
from releases.states import DEPLOYMENT_FINAL_STATES
from releases.tools import DeployTools


class DeploymentJobs:
    model = Deployment

    def __init__(self, tools: DeployTools) -> None:
        self.tools = tools

    def carried(self) -> QuerySet[Deployment]:
        return Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES).filter(
            heartbeat_at__isnull=False
        )

    def waiting(self) -> QuerySet[Deployment]:
        return Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES).filter(
            heartbeat_at__isnull=True
        )

    def restart(self, job: Deployment, *, why: str, attempt: int) -> None:
        # Each step is safe to repeat: the next worker resumes at the one it was in.
        self._note(
            job,
            f"{why} while {job.status}; resuming it "
            f"(attempt {attempt} of {settings.DOCKYARD_ATTEMPTS})",
        )
        deployment_enqueue(job)

    def give_up(self, job: Deployment, *, why: str, attempts: int) -> None:
        # Abandoning moves the deployment and the proxy under their own locks.
        current = Deployment.objects.get(pk=job.pk)
        if current.status in DEPLOYMENT_FINAL_STATES:
            return
        deployment_abandon(
            deployment=current,
            reason=f"{why} while {current.status}; lost {attempts} times, not trying again",
            tools=self.tools,
        )

    def resend(self, job: Deployment) -> None:
        self._note(job, "the broker no longer holds its task (restarted?); sent again")
        deployment_enqueue(job)

    def _note(self, job: Deployment, detail: str) -> None:
        DeploymentEvent.objects.create(
            deployment=job, from_status=job.status, to_status=job.status, detail=detail
        )
