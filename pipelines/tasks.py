"""Celery tasks of the pipelines app: thin, id-based, idempotent."""

from celery import Task, shared_task

from pipelines.configuration import config_stage
from pipelines.execution import stage_execute
from pipelines.services import dependents_rebuild
from pipelines.states import StageName
from pipelines.workspace import checkout_stage


@shared_task(name="pipelines.checkout", bind=True)
def checkout(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.CHECKOUT, task_id=self.request.id, body=checkout_stage
    )


@shared_task(name="pipelines.config", bind=True)
def config(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.CONFIG, task_id=self.request.id, body=config_stage
    )


@shared_task(name="pipelines.rebuild_dependents")
def rebuild_dependents(run_id: int) -> None:
    dependents_rebuild(base_run_id=run_id)
