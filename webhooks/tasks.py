"""Celery tasks of the webhooks app: thin, id-based."""

from typing import Any

from celery import shared_task

from webhooks.forge_api import ForgeAPIError
from webhooks.notifications import (
    notification_send,
    notifications_for_deployment,
    notifications_for_run,
)
from webhooks.outgoing import OutgoingWebhookError
from webhooks.services import commit_status_report


# A forge that is down never fails a run: the report is retried with growing pauses, then
# given up (the run's page stays the source of truth).
@shared_task(
    name="webhooks.report_commit_status",
    autoretry_for=(ForgeAPIError,),
    retry_backoff=2,
    retry_backoff_max=600,
    max_retries=10,
)
def report_commit_status(run_id: int, event_id: int) -> None:
    commit_status_report(run_id=run_id, event_id=event_id)


@shared_task(name="webhooks.notify_run")
def notify_run(run_id: int) -> None:
    notifications_for_run(run_id=run_id)


@shared_task(name="webhooks.notify_deployment")
def notify_deployment(deployment_id: int) -> None:
    notifications_for_deployment(deployment_id=deployment_id)


# A chat endpoint that is down never affects a run or a deployment: retried, then dropped.
@shared_task(
    name="webhooks.notify",
    autoretry_for=(OutgoingWebhookError,),
    retry_backoff=2,
    retry_backoff_max=600,
    max_retries=8,
)
def notify(endpoint_id: int, payload: dict[str, Any]) -> None:
    notification_send(endpoint_id=endpoint_id, payload=payload)
