"""Celery tasks of the pipelines app: thin, id-based, idempotent."""

from celery import Task, shared_task

from builds.services import build_stage, publish_stage, run_cleanup, test_stage
from infrastructure import dispatch
from pipelines.configuration import config_stage
from pipelines.execution import stage_execute
from pipelines.services import dependents_rebuild
from pipelines.states import StageName
from pipelines.workspace import checkout_stage
from releases.services import release_from_run


@shared_task(name=dispatch.CHECKOUT.name, bind=True)
def checkout(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.CHECKOUT, task_id=self.request.id, body=checkout_stage
    )


@shared_task(name=dispatch.CONFIG.name, bind=True)
def config(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.CONFIG, task_id=self.request.id, body=config_stage
    )


@shared_task(name=dispatch.BUILD.name, bind=True)
def build(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.BUILD, task_id=self.request.id, body=build_stage
    )


@shared_task(name=dispatch.TEST.name, bind=True)
def test(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.TEST, task_id=self.request.id, body=test_stage
    )


@shared_task(name=dispatch.PUBLISH.name, bind=True)
def publish(self: Task, run_id: int) -> None:
    stage_execute(
        run_id=run_id, stage_name=StageName.PUBLISH, task_id=self.request.id, body=publish_stage
    )


@shared_task(name=dispatch.RUN_CLEANUP.name)
def cleanup_run(run_id: int) -> None:
    run_cleanup(run_id)


@shared_task(name=dispatch.DEPENDENTS_REBUILD.name)
def rebuild_dependents(run_id: int) -> None:
    dependents_rebuild(base_run_id=run_id)


@shared_task(name=dispatch.RELEASE_FROM_RUN.name)
def release(run_id: int) -> None:
    release_from_run(run_id=run_id)
