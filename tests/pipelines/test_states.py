import pytest

from pipelines.states import (
    RUN_FINAL_STATES,
    RUN_TRANSITIONS,
    IllegalTransition,
    RunStatus,
    StageStatus,
    check_run_transition,
    check_stage_transition,
)


def test_a_final_run_can_never_move_again() -> None:
    for final in RUN_FINAL_STATES:
        for target in RunStatus:
            with pytest.raises(IllegalTransition, match=f"from {final} to {target}"):
                check_run_transition(final, target)


def test_a_run_is_queued_then_running_then_final() -> None:
    check_run_transition(RunStatus.QUEUED, RunStatus.RUNNING)
    check_run_transition(RunStatus.RUNNING, RunStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        check_run_transition(RunStatus.QUEUED, RunStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        check_run_transition(RunStatus.RUNNING, RunStatus.QUEUED)


def test_every_non_final_run_state_has_a_way_out() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus) - RUN_FINAL_STATES


def test_a_stage_cannot_succeed_without_running() -> None:
    with pytest.raises(IllegalTransition):
        check_stage_transition(StageStatus.PENDING, StageStatus.SUCCEEDED)
    check_stage_transition(StageStatus.PENDING, StageStatus.RUNNING)
    check_stage_transition(StageStatus.RUNNING, StageStatus.SUCCEEDED)
