"""Celery tasks of the builds app: thin, id-based, idempotent."""

from celery import Task, shared_task

from builds.services import build_stage, publish_stage, run_cleanup, test_stage
from pipelines.execution import stage_execute
from pipelines.states import StageName


@shared_task(name="builds.build", bind=True)
def build(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.BUILD, task_id=self.request.id, body=build_stage
    )


@shared_task(name="builds.test", bind=True)
def test(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.TEST, task_id=self.request.id, body=test_stage
    )


@shared_task(name="builds.publish", bind=True)
def publish(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.PUBLISH, task_id=self.request.id, body=publish_stage
    )


@shared_task(name="builds.cleanup_run")
def cleanup_run(run_id: int) -> None:
    run_cleanup(run_id)
