"""Which moves the deployment state machines allow: the steps in order, failure before every
host switched, a switched host reverted and never failed, never back from an end."""

import itertools

import pytest

from releases.states import (
    DEPLOYMENT_STEPS,
    HOST_STEPS,
    DeploymentStatus,
    HostStatus,
    IllegalDeploymentTransition,
    check_deployment_transition,
    check_host_transition,
)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (DeploymentStatus.QUEUED, DeploymentStatus.PREPARING),
        (DeploymentStatus.PREPARING, DeploymentStatus.RELEASING),
        (DeploymentStatus.PREPARING, DeploymentStatus.ROLLING),  # no release command
        (DeploymentStatus.RELEASING, DeploymentStatus.ROLLING),
        (DeploymentStatus.ROLLING, DeploymentStatus.FINISHING),
        (DeploymentStatus.ROLLING, DeploymentStatus.REVERTING),
        (DeploymentStatus.FINISHING, DeploymentStatus.SUCCEEDED),
    ],
)
def test_each_deployment_step_leads_to_the_next(current: str, target: str) -> None:
    check_deployment_transition(current, target)


@pytest.mark.parametrize("current", [*DEPLOYMENT_STEPS[:4], DeploymentStatus.REVERTING])
def test_every_deployment_step_before_every_host_switched_may_fail(current: str) -> None:
    check_deployment_transition(current, DeploymentStatus.FAILED)


def test_a_finishing_deployment_can_only_succeed_every_host_already_serves_it() -> None:
    with pytest.raises(IllegalDeploymentTransition, match="a finishing deployment can only"):
        check_deployment_transition(DeploymentStatus.FINISHING, DeploymentStatus.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (DeploymentStatus.QUEUED, DeploymentStatus.ROLLING),  # a step skipped
        (DeploymentStatus.ROLLING, DeploymentStatus.PREPARING),  # a step back
        (DeploymentStatus.REVERTING, DeploymentStatus.SUCCEEDED),
        (DeploymentStatus.SUCCEEDED, DeploymentStatus.QUEUED),
        (DeploymentStatus.FAILED, DeploymentStatus.PREPARING),
    ],
)
def test_other_deployment_moves_are_refused(current: str, target: str) -> None:
    with pytest.raises(IllegalDeploymentTransition):
        check_deployment_transition(current, target)


@pytest.mark.parametrize(("current", "target"), list(itertools.pairwise(HOST_STEPS)))
def test_each_host_step_leads_to_the_next(current: str, target: str) -> None:
    check_host_transition(current, target)


@pytest.mark.parametrize(
    "current", [HostStatus.SWITCHING, HostStatus.DRAINING, HostStatus.SWITCHED]
)
def test_a_host_that_moved_traffic_may_be_switched_back(current: str) -> None:
    check_host_transition(current, HostStatus.REVERTED)


def test_a_switched_host_is_reverted_never_failed() -> None:
    with pytest.raises(IllegalDeploymentTransition, match="reverted, not failed"):
        check_host_transition(HostStatus.SWITCHED, HostStatus.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (HostStatus.WAITING, HostStatus.CHECKING),
        (HostStatus.CHECKING, HostStatus.REVERTED),  # nothing switched yet
        (HostStatus.FINISHED, HostStatus.REVERTED),
        (HostStatus.FAILED, HostStatus.STARTING),
    ],
)
def test_other_host_moves_are_refused(current: str, target: str) -> None:
    with pytest.raises(IllegalDeploymentTransition):
        check_host_transition(current, target)
