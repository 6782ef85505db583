"""Celery tasks of the pipelines app: thin, id-based, idempotent."""

from celery import Task, shared_task

from pipelines.execution import stage_execute
from pipelines.states import StageName
from pipelines.workspace import checkout_stage


@shared_task(name="pipelines.checkout", bind=True)
def checkout(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.CHECKOUT, task_id=self.request.id, body=checkout_stage
    )
