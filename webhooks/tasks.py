"""Celery tasks of the webhooks app: thin, id-based."""

from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.core.exceptions import ObjectDoesNotExist

from infrastructure import dispatch
from infrastructure.forge_api import ForgeAPIError
from infrastructure.outgoing_webhooks import OutgoingWebhookError
from webhooks.notifications import (
    notification_send,
    notifications_for_deployment,
    notifications_for_run,
)
from webhooks.services import commit_status_give_up, commit_status_report


# A forge that is down never fails a run: the report is retried with growing pauses, then
# given up and marked so (the run's page stays the source of truth). Retries keep the task
# id, which is how the reaper asks the broker whether a report is still on its way.
@shared_task(bind=True, name=dispatch.COMMIT_STATUS_REPORT.name, max_retries=10)
def report_commit_status(self: Task, run_id: int, event_id: int) -> None:
    try:
        commit_status_report(run_id=run_id, event_id=event_id)
    except ObjectDoesNotExist:
        return  # The run was deleted meanwhile: nothing left to tell.
    except Exception as error:
        # The forge down or refusing, and our own database or keys failing for a while, all
        # pass: retried alike. Marked only once retries run out, so the reaper lets it be.
        if self.request.retries >= self.max_retries:
            commit_status_give_up(run_id=run_id, event_id=event_id, error=error)
            if isinstance(error, ForgeAPIError):
                return
            raise
        raise self.retry(
            exc=error,
            countdown=get_exponential_backoff_interval(
                factor=2, retries=self.request.retries, maximum=600, full_jitter=True
            ),
        ) from None


@shared_task(name=dispatch.RUN_NOTIFY.name)
def notify_run(run_id: int) -> None:
    notifications_for_run(run_id=run_id)


@shared_task(name=dispatch.DEPLOYMENT_NOTIFY.name)
def notify_deployment(deployment_id: int) -> None:
    notifications_for_deployment(deployment_id=deployment_id)


# A chat endpoint that is down never affects a run or a deployment: retried, then dropped.
@shared_task(
    name=dispatch.NOTIFICATION_SEND.name,
    autoretry_for=(OutgoingWebhookError,),
    retry_backoff=2,
    retry_backoff_max=600,
    max_retries=8,
)
def notify(endpoint_id: int, payload: dict[str, Any]) -> None:
    notification_send(endpoint_id=endpoint_id, payload=payload)
