"""The deployment state machines: which moves are legal. Pure, no ORM.

A deployment moves an environment to a release on every host of the environment. It is a
coordinator (Deployment) and one job per host (HostDeployment), each with its own machine:

    deployment: queued -> preparing -> [releasing] -> rolling -> finishing -> succeeded
                                                         `-> reverting -> failed
                `-> stopping -> succeeded        (an operator stopped the environment)
    host:       waiting -> starting -> checking -> switching -> draining -> switched -> finished
                                                                            `-> reverted

Preparing puts every host's proxy in order and the release's image on every host: a host that
cannot pull fails the deployment before anything changes. Releasing runs the release command
once. Rolling runs the hosts' jobs in batches; a host that fails sends the deployment to
reverting, which switches back the hosts that had switched. Finishing stops the old slots.

Restart and start are deployments of the release that serves (a restart host by host), so
they go through the same blue/green switch; stop takes every host's live slot out of its
proxy and stops its containers, kept for the next start or rollback.
"""

from django.db import models


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued"
    # Every host's proxy up, the release's image (by digest) on every host.
    PREPARING = "preparing"
    # The release command (dockyard.yml deploy.release_command) runs once, on one host.
    RELEASING = "releasing"
    # The hosts' jobs run, a batch at a time.
    ROLLING = "rolling"
    # A host failed: the hosts that switched switch back; the old release serves.
    REVERTING = "reverting"
    # Every host serves the release: the old slots stop, kept for rollback.
    FINISHING = "finishing"
    # An operator stopped the environment: every host's live slot in maintenance, its
    # containers stopped (kept).
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class HostStatus(models.TextChoices):
    # Its batch has not begun.
    WAITING = "waiting"
    # The release's container starts in the idle slot (or a kept one, for a rollback).
    STARTING = "starting"
    # Until the host's HAProxy finds it healthy.
    CHECKING = "checking"
    # The host's HAProxy points at the new slot (runtime API, no reload).
    SWITCHING = "switching"
    # The old slot finishes its requests; its container still runs, for a revert.
    DRAINING = "draining"
    SWITCHED = "switched"
    # The old slot's container stopped and kept: done.
    FINISHED = "finished"
    FAILED = "failed"
    # Switched, then switched back because another host failed.
    REVERTED = "reverted"


class DeploymentKind(models.TextChoices):
    DEPLOY = "deploy"
    AUTO = "auto", "auto-deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    # The release that serves, in fresh containers, host by host (a rolling restart).
    RESTART = "restart"
    STOP = "stop"
    # The release that served before a stop, in fresh containers.
    START = "start"
    # The release that serves, in as many containers per host as an operator asked.
    SCALE = "scale"


# Kinds that move the environment to another release (the others operate the one it has).
RELEASE_MOVES = frozenset(
    {DeploymentKind.DEPLOY, DeploymentKind.AUTO, DeploymentKind.PROMOTE, DeploymentKind.ROLLBACK}
)


class WatchState(models.TextChoices):
    """A deployment's watch (dockyard.yml deploy.watch): after every host switched, the new
    release's error rate through the hosts' proxies is watched for a while."""

    NONE = "", "not watched"
    WATCHING = "watching"
    PASSED = "passed"
    # Its error rate went over the limit: the release that served before came back.
    ROLLED_BACK = "rolled_back", "rolled back"
    # Another deployment of the environment began before the window ended.
    SUPERSEDED = "superseded"


class Slot(models.TextChoices):
    BLUE = "blue"
    GREEN = "green"


def other_slot(slot: str) -> str:
    return Slot.GREEN if slot == Slot.BLUE else Slot.BLUE


def replica_server(slot: str, index: int) -> str:
    """The proxy's name for replica `index` (from 0) of `slot`: `blue`, `blue-2`, ..."""
    return slot if index == 0 else f"{slot}-{index + 1}"


def slot_servers(slot: str, replicas: int) -> list[str]:
    return [replica_server(slot, index) for index in range(replicas)]


DEPLOYMENT_FINAL_STATES = frozenset({DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED})
# What the coordinator does itself, in a task; while ROLLING the hosts' jobs do the work.
DEPLOYMENT_CARRIED_STATES = frozenset(
    {
        DeploymentStatus.QUEUED,
        DeploymentStatus.PREPARING,
        DeploymentStatus.RELEASING,
        DeploymentStatus.REVERTING,
        DeploymentStatus.FINISHING,
        DeploymentStatus.STOPPING,
    }
)
_DEPLOYMENT_MOVES: dict[str, frozenset[str]] = {
    DeploymentStatus.QUEUED: frozenset({DeploymentStatus.PREPARING, DeploymentStatus.STOPPING}),
    DeploymentStatus.PREPARING: frozenset({DeploymentStatus.RELEASING, DeploymentStatus.ROLLING}),
    DeploymentStatus.RELEASING: frozenset({DeploymentStatus.ROLLING}),
    DeploymentStatus.ROLLING: frozenset({DeploymentStatus.FINISHING, DeploymentStatus.REVERTING}),
    DeploymentStatus.REVERTING: frozenset(),
    # Every host serves the new release: failing now would not put the old one back.
    DeploymentStatus.FINISHING: frozenset({DeploymentStatus.SUCCEEDED}),
    DeploymentStatus.STOPPING: frozenset({DeploymentStatus.SUCCEEDED}),
}
# Where a deployment may fail from (anywhere before every host switched).
_MAY_FAIL = frozenset(
    {
        DeploymentStatus.QUEUED,
        DeploymentStatus.PREPARING,
        DeploymentStatus.RELEASING,
        DeploymentStatus.ROLLING,
        DeploymentStatus.REVERTING,
        # A host that could not be stopped: the hosts' proxies are put back by the keeper.
        DeploymentStatus.STOPPING,
    }
)

# The coordinator's steps in order, as a page lists those still to come (releasing only when
# dockyard.yml has a release command; any may end in FAILED).
DEPLOYMENT_STEPS: tuple[str, ...] = (
    DeploymentStatus.QUEUED,
    DeploymentStatus.PREPARING,
    DeploymentStatus.RELEASING,
    DeploymentStatus.ROLLING,
    DeploymentStatus.FINISHING,
    DeploymentStatus.SUCCEEDED,
)

# A stop's steps.
STOP_STEPS: tuple[str, ...] = (
    DeploymentStatus.QUEUED,
    DeploymentStatus.STOPPING,
    DeploymentStatus.SUCCEEDED,
)


def coordinator_steps(kind: str) -> tuple[str, ...]:
    """The coordinator's steps for a deployment of `kind`, in order."""
    return STOP_STEPS if kind == DeploymentKind.STOP else DEPLOYMENT_STEPS


HOST_FINAL_STATES = frozenset({HostStatus.FINISHED, HostStatus.FAILED, HostStatus.REVERTED})
# A host whose job is running (a worker carries it).
HOST_ACTIVE_STATES = frozenset(
    {
        HostStatus.STARTING,
        HostStatus.CHECKING,
        HostStatus.SWITCHING,
        HostStatus.DRAINING,
    }
)
HOST_STEPS: tuple[str, ...] = (
    HostStatus.WAITING,
    HostStatus.STARTING,
    HostStatus.CHECKING,
    HostStatus.SWITCHING,
    HostStatus.DRAINING,
    HostStatus.SWITCHED,
    HostStatus.FINISHED,
)


class IllegalDeploymentTransition(Exception):
    """A move the deployment state machines do not allow."""


def check_deployment_transition(current: str, target: str) -> None:
    if current in DEPLOYMENT_FINAL_STATES:
        raise IllegalDeploymentTransition(f"deployment cannot move from {current} to {target}")
    if target == DeploymentStatus.FAILED:
        if current not in _MAY_FAIL:
            raise IllegalDeploymentTransition(
                f"a {current} deployment can only succeed: every host serves the new release"
            )
        return
    if target not in _DEPLOYMENT_MOVES.get(current, frozenset()):
        raise IllegalDeploymentTransition(f"deployment cannot move from {current} to {target}")


def check_host_transition(current: str, target: str) -> None:
    if current in HOST_FINAL_STATES:
        raise IllegalDeploymentTransition(f"a host's job cannot move from {current} to {target}")
    if target == HostStatus.FAILED:
        if current == HostStatus.SWITCHED:
            raise IllegalDeploymentTransition("a switched host is reverted, not failed")
        return
    if target == HostStatus.REVERTED:
        if current not in {HostStatus.SWITCHED, HostStatus.DRAINING, HostStatus.SWITCHING}:
            raise IllegalDeploymentTransition(f"a {current} host has nothing to switch back")
        return
    if HOST_STEPS.index(target) != HOST_STEPS.index(current) + 1:
        raise IllegalDeploymentTransition(f"a host's job cannot move from {current} to {target}")
