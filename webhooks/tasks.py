"""Celery tasks of the webhooks app: thin, id-based."""

from celery import shared_task

from webhooks.forge_api import ForgeAPIError
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
