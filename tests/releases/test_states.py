"""Which moves the deployment state machine allows: the steps in order, failure before traffic
moved, never back from an end."""

import itertools

import pytest

from releases.states import (
    DEPLOYMENT_STEPS,
    DeploymentStatus,
    IllegalDeploymentTransition,
    check_deployment_transition,
)


@pytest.mark.parametrize(("current", "target"), list(itertools.pairwise(DEPLOYMENT_STEPS)))
def test_each_step_leads_to_the_next(current: str, target: str) -> None:
    check_deployment_transition(current, target)


@pytest.mark.parametrize("current", DEPLOYMENT_STEPS[:-2])
def test_every_step_before_the_drain_may_fail(current: str) -> None:
    check_deployment_transition(current, DeploymentStatus.FAILED)


def test_a_draining_deployment_can_only_succeed_the_new_version_already_serves() -> None:
    with pytest.raises(IllegalDeploymentTransition, match="a draining deployment can only succeed"):
        check_deployment_transition(DeploymentStatus.DRAINING, DeploymentStatus.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (DeploymentStatus.QUEUED, DeploymentStatus.CHECKING),  # a step skipped
        (DeploymentStatus.SWITCHING, DeploymentStatus.STARTING),  # a step back
        (DeploymentStatus.SUCCEEDED, DeploymentStatus.QUEUED),
        (DeploymentStatus.FAILED, DeploymentStatus.PREPARING),
    ],
)
def test_other_moves_are_refused(current: str, target: str) -> None:
    with pytest.raises(IllegalDeploymentTransition):
        check_deployment_transition(current, target)
