"""Celery tasks of the pipelines app: thin, id-based, idempotent. Names and queues are in
infrastructure.dispatch; each stage task hands its stage (and, on one worker, the stages after
it) to pipelines.execution."""

from celery import Task, shared_task
from django.conf import settings

from infrastructure import dispatch
from infrastructure.docker_engine import DockerEngine
from pipelines.execution import StageBody, StageTools, stages_execute
from pipelines.releasing import release_from_run
from pipelines.services import dependents_rebuild
from pipelines.stages.build import build_stage
from pipelines.stages.checkout import checkout_stage
from pipelines.stages.cleanup import run_cleanup
from pipelines.stages.config import config_stage
from pipelines.stages.publish import publish_stage
from pipelines.stages.test import test_stage
from pipelines.states import StageName

# This worker's engine, for every stage it runs.
TOOLS = StageTools(
    engine=lambda: DockerEngine(settings.DOCKER_HOST),
    carries_on=settings.DOCKYARD_STAGES_ON_ONE_WORKER,
)


# What each stage does, by name (each stage's task starts there).
STAGE_BODIES: dict[str, StageBody] = {
    StageName.CHECKOUT: checkout_stage,
    StageName.CONFIG: config_stage,
    StageName.BUILD: build_stage,
    StageName.TEST: test_stage,
    StageName.PUBLISH: publish_stage,
}


def _stages(task: Task, run_id: int, name: StageName) -> None:
    stages_execute(
        run_id=run_id,
        stage_name=name,
        task_id=task.request.id,
        bodies=STAGE_BODIES,
        tools=TOOLS,
        carry_on=TOOLS.carries_on,
    )


@shared_task(name=dispatch.CHECKOUT.name, bind=True)
def checkout(self: Task, run_id: int) -> None:
    _stages(self, run_id, StageName.CHECKOUT)


@shared_task(name=dispatch.CONFIG.name, bind=True)
def config(self: Task, run_id: int) -> None:
    _stages(self, run_id, StageName.CONFIG)


@shared_task(name=dispatch.BUILD.name, bind=True)
def build(self: Task, run_id: int) -> None:
    _stages(self, run_id, StageName.BUILD)


@shared_task(name=dispatch.TEST.name, bind=True)
def test(self: Task, run_id: int) -> None:
    _stages(self, run_id, StageName.TEST)


@shared_task(name=dispatch.PUBLISH.name, bind=True)
def publish(self: Task, run_id: int) -> None:
    _stages(self, run_id, StageName.PUBLISH)


@shared_task(name=dispatch.RUN_CLEANUP.name)
def cleanup_run(run_id: int) -> None:
    run_cleanup(run_id, TOOLS)


@shared_task(name=dispatch.DEPENDENTS_REBUILD.name)
def rebuild_dependents(run_id: int) -> None:
    dependents_rebuild(base_run_id=run_id)


# Tried again on any failure (two projects' environments taking ports at once, the database
# away a moment): a passed run must not be left without its release. The reaper sends again
# what is still missing after that.
@shared_task(
    name=dispatch.RELEASE_FROM_RUN.name,
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_jitter=True,
    max_retries=5,
)
def release(run_id: int) -> None:
    release_from_run(run_id=run_id)
