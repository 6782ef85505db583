"""The run and stage state machines: which moves are legal. Pure, no ORM."""

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StageName(models.TextChoices):
    CHECKOUT = "checkout"
    CONFIG = "config"
    BUILD = "build"
    TEST = "test"
    PUBLISH = "publish"


# The order in which a run's stages execute.
STAGE_ORDER: tuple[StageName, ...] = (
    StageName.CHECKOUT,
    StageName.CONFIG,
    StageName.BUILD,
    StageName.TEST,
    StageName.PUBLISH,
)

RUN_FINAL_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
STAGE_FINAL_STATES = frozenset(
    {StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.CANCELLED}
)

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}),
}

STAGE_TRANSITIONS: dict[str, frozenset[str]] = {
    StageStatus.PENDING: frozenset(
        {StageStatus.RUNNING, StageStatus.SKIPPED, StageStatus.CANCELLED}
    ),
    # running -> pending: the worker died mid-stage and the redelivered task starts it again.
    StageStatus.RUNNING: frozenset(
        {StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.CANCELLED, StageStatus.PENDING}
    ),
}


class IllegalTransition(Exception):
    """A move the state machine does not allow, e.g. succeeded -> running."""


def check_run_transition(current: str, target: str) -> None:
    if target not in RUN_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"run cannot move from {current} to {target}")


def check_stage_transition(current: str, target: str) -> None:
    if target not in STAGE_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"stage cannot move from {current} to {target}")
