"""Who may deploy to an environment: its listed deployers, else any operator; superusers
always. Who may manage hosts (where environments run, and so where their secrets go):
superusers only. `can_*` answers; `require_*` raises AccessDenied naming what was refused."""

from projects.access import AccessDenied, AnyUser
from releases.models import Environment


def can_deploy_to(user: AnyUser, environment: Environment) -> bool:
    """May `user` deploy, promote and roll back `environment`?"""
    if not user.is_authenticated or not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    if environment.deployers.exists():
        return environment.deployers.filter(pk=user.pk).exists()
    return bool(getattr(user, "is_staff", False))


def require_deployer(user: AnyUser, environment: Environment) -> None:
    """Raise AccessDenied unless `user` may deploy to `environment`."""
    if not can_deploy_to(user, environment):
        raise AccessDenied(f"you may not deploy to {environment.name}")


def require_host_manager(user: AnyUser, *, to: str) -> None:
    """Raise AccessDenied unless `user` may add hosts and choose an environment's hosts."""
    if not (user.is_authenticated and user.is_active and getattr(user, "is_superuser", False)):
        raise AccessDenied(f"only superusers may {to}")
