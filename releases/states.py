"""The deployment state machine: which moves are legal. Pure, no ORM."""

from django.db import models


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued"
    # Make sure the release's image (by digest) is on the target engine.
    PREPARING = "preparing"
    # Start the container in the idle slot.
    STARTING = "starting"
    # Wait until the new container answers its health check.
    CHECKING = "checking"
    # Point the proxy at the new slot (runtime API, no reload).
    SWITCHING = "switching"
    # Let the old slot finish its requests, then stop its container and keep it.
    DRAINING = "draining"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeploymentKind(models.TextChoices):
    DEPLOY = "deploy"
    AUTO = "auto", "auto-deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class Slot(models.TextChoices):
    BLUE = "blue"
    GREEN = "green"


def other_slot(slot: str) -> str:
    return Slot.GREEN if slot == Slot.BLUE else Slot.BLUE


DEPLOYMENT_FINAL_STATES = frozenset({DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED})
# The steps in order; each may also end in FAILED.
DEPLOYMENT_STEPS: tuple[str, ...] = (
    DeploymentStatus.QUEUED,
    DeploymentStatus.PREPARING,
    DeploymentStatus.STARTING,
    DeploymentStatus.CHECKING,
    DeploymentStatus.SWITCHING,
    DeploymentStatus.DRAINING,
    DeploymentStatus.SUCCEEDED,
)


class IllegalDeploymentTransition(Exception):
    """A move the deployment state machine does not allow."""


def check_deployment_transition(current: str, target: str) -> None:
    if current in DEPLOYMENT_FINAL_STATES:
        raise IllegalDeploymentTransition(f"deployment cannot move from {current} to {target}")
    if target == DeploymentStatus.FAILED:
        # Once traffic has moved, the deployment is past the point where failing would leave
        # the old version serving: it can only finish.
        if current == DeploymentStatus.DRAINING:
            raise IllegalDeploymentTransition("a draining deployment can only succeed")
        return
    if DEPLOYMENT_STEPS.index(target) != DEPLOYMENT_STEPS.index(current) + 1:
        raise IllegalDeploymentTransition(f"deployment cannot move from {current} to {target}")
