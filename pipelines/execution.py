"""Running one stage of a run: claim it, do its work, record the outcome, move the run on.

Stage tasks are thin: each calls stages_execute with the functions that do its stages' work
(pipelines.stages) and the tools it works with (the worker's engine), which tests of the run
path replace with in-memory stand-ins.
"""

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

from django.db import transaction

from builds.errors import BuildCancelled, BuildFailure
from infrastructure.docker_engine import ContainerEngine, DockerEngineError
from infrastructure.durable_jobs import Take, job_heartbeat, job_out_of_attempts, job_take
from pipelines.models import PipelineRun, Stage
from pipelines.selectors import run_is_cancelled
from pipelines.services import (
    do_run_transition,
    do_stage_transition,
    run_advance,
    run_fail,
)
from pipelines.stage_log import StageLog
from pipelines.states import RUN_FINAL_STATES, RunStatus, StageStatus
from projects.selectors import project_secret_values

logger = logging.getLogger(__name__)


class StageFailure(Exception):
    """The stage failed for a reason the user can act on (a failing test, a bad Dockerfile)."""


class StageCancelled(Exception):
    """The run was cancelled while the stage ran; its work stopped early."""


@dataclass(frozen=True)
class StageTools:
    """The outside world a stage works with, handed in by its task."""

    # The worker's own engine: it builds, tests and pushes.
    engine: Callable[[], AbstractContextManager[ContainerEngine]]
    # This worker carries the run's next stage too (stages_execute with carry_on): the build
    # leaves its candidates' push to the test stage, which pushes them beside the tests.
    carries_on: bool = False


StageBody = Callable[[PipelineRun, StageLog, StageTools], None]


@dataclass(frozen=True)
class _Claim:
    run: PipelineRun
    stage: Stage


def stages_execute(
    *,
    run_id: int,
    stage_name: str,
    task_id: str,
    bodies: Mapping[str, StageBody],
    tools: StageTools,
    carry_on: bool,
) -> None:
    """Execute a stage of a run exactly once, however often its task is delivered; then, when
    `carry_on`, each stage after it on this worker as the one before succeeds: the run's
    images stay on this engine, and no stage waits for a round trip through the broker.
    Without `carry_on` each next stage goes to the broker, for whichever worker is free."""
    claim = _stage_claim(run_id=run_id, stage_name=stage_name, task_id=task_id)
    while claim is not None:
        claim = _claimed_stage_execute(
            claim, body=bodies[claim.stage.name], tools=tools, carry_on=carry_on
        )


def _claimed_stage_execute(
    claim: _Claim, *, body: StageBody, tools: StageTools, carry_on: bool
) -> _Claim | None:
    """Do the claimed stage's work and settle it. Returns the next stage, already claimed
    for this worker, when `carry_on` and this one succeeded."""
    run, stage = claim.run, claim.stage
    if job_out_of_attempts(stage):
        # Each earlier start lost its worker mid-stage (killed, out of memory, machine gone).
        with transaction.atomic():
            locked_run = PipelineRun.objects.select_for_update(of=("self",)).get(pk=run.pk)
            run_fail(
                run=locked_run,
                stage=Stage.objects.select_for_update().get(pk=stage.pk),
                reason=f"its worker was lost {stage.attempts - 1} times; not trying again",
            )
        return None
    if stage.attempts > 1:
        _lost_attempt_sweep(run, tools)
    log = StageLog(
        stage,
        secrets=project_secret_values(run.project),
        should_stop=lambda: run_is_cancelled(run.pk),
    )
    failure_reason: str | None = None
    try:
        with job_heartbeat(stage):
            body(run, log, tools)
    except (StageCancelled, BuildCancelled):
        # The cancel has already settled the stage; should it not have, the stage fails.
        failure_reason = "stopped: the run was cancelled"
    except (StageFailure, BuildFailure, DockerEngineError) as failure:
        # What the user can act on, or what the engine said (it names what it refused).
        failure_reason = str(failure)
    except Exception as error:
        # An error of ours, not of the user's repository: say so, and never leave the run
        # "running" behind it.
        logger.exception("stage %s of run %s crashed", stage.name, run.pk)
        failure_reason = f"internal error: {error!r}"
    return _stage_settle(run, stage, log, failure_reason=failure_reason, carry_on=carry_on)


def _stage_claim(*, run_id: int, stage_name: str, task_id: str) -> _Claim | None:
    with transaction.atomic():
        run = _run_locked(run_id)
        if run is None:
            logger.warning("run %s no longer exists; dropping its %s task", run_id, stage_name)
            return None
        return _stage_claim_locked(run, stage_name=stage_name, task_id=task_id)


def _run_locked(run_id: int) -> PipelineRun | None:
    # `of`: lock the run's row only, never the project's it is joined with.
    return (
        PipelineRun.objects.select_for_update(of=("self",))
        .select_related("project")
        .filter(pk=run_id)
        .first()
    )


def _stage_claim_locked(run: PipelineRun, *, stage_name: str, task_id: str) -> _Claim | None:
    """Claim the run's stage for the delivery of `task_id`; call holding the run's row lock."""
    if run.status in RUN_FINAL_STATES:
        return None
    stage = run.stages.select_for_update().get(name=stage_name)
    if stage.status in (StageStatus.SUCCEEDED, StageStatus.SKIPPED):
        # A redelivery after the stage ended: its worker may have died before the next
        # stage was enqueued, so make sure the run moves on.
        run_advance(run=run)
        return None
    if stage.status != StageStatus.PENDING and stage.status != StageStatus.RUNNING:
        return None
    if stage.status == StageStatus.RUNNING and stage.task_id != task_id:
        # Another task owns it (the reaper sent a new one, or this is a stale copy).
        logger.info("stage %s of run %s is already running; duplicate", stage_name, run.pk)
        return None
    if job_take(stage, task_id=task_id) == Take.DUPLICATE:
        logger.info("stage %s of run %s is carried by another worker", stage_name, run.pk)
        return None
    if stage.status == StageStatus.RUNNING:
        do_stage_transition(
            stage=stage,
            to=StageStatus.PENDING,
            reason="the worker running this stage was lost; starting it again",
        )
    if run.status == RunStatus.QUEUED:
        do_run_transition(run=run, to=RunStatus.RUNNING)
    do_stage_transition(stage=stage, to=StageStatus.RUNNING, task_id=task_id)
    return _Claim(run=run, stage=stage)


def _stage_settle(
    run: PipelineRun, stage: Stage, log: StageLog, *, failure_reason: str | None, carry_on: bool
) -> _Claim | None:
    """Record the stage's outcome and move the run on. When `carry_on`, the next stage is
    claimed for this worker in the same transaction: one commit and one status update for
    the page between two stages, not two of each."""
    if failure_reason is not None:
        log.line(f"{stage.name} failed: {failure_reason}")
    log.close()
    with transaction.atomic():
        locked_run = _run_locked(run.pk)
        if locked_run is None:
            return None
        locked_stage = Stage.objects.get(pk=stage.pk)
        if locked_stage.status != StageStatus.RUNNING or locked_stage.task_id != stage.task_id:
            # Cancelled or settled by someone else meanwhile, or given to another attempt
            # while this worker was out of touch: theirs is the last word.
            return None
        if failure_reason is not None:
            run_fail(run=locked_run, stage=locked_stage, reason=failure_reason)
            return None
        do_stage_transition(stage=locked_stage, to=StageStatus.SUCCEEDED)
        handed = run_advance(run=locked_run, carry_on=carry_on)
        if handed is None:
            return None
        return _stage_claim_locked(locked_run, stage_name=handed.stage_name, task_id=handed.task_id)


def _lost_attempt_sweep(run: PipelineRun, tools: StageTools) -> None:
    """Remove the containers a lost attempt of this run's stage may have left running."""
    try:
        with tools.engine() as engine:
            removed = engine.remove_containers(labels={"dockyard.run": str(run.pk)})
    except DockerEngineError as error:
        logger.warning("could not sweep the containers of run %s: %s", run.pk, error)
    else:
        if removed:
            logger.warning("removed %d container(s) of a lost attempt of run %s", removed, run.pk)
