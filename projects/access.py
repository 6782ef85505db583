"""Who may do what to projects. `can_*` answers; `require_*` raises AccessDenied naming who may.

Everyone logged in reads; operators (staff) add projects, change their settings, secrets and
grants, and control their runs.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied

AnyUser = AbstractBaseUser | AnonymousUser


class AccessDenied(PermissionDenied):
    """The user may not do this; the message says who may (a 403 at every edge)."""


def is_operator(user: AnyUser) -> bool:
    """Staff, signed in and active: Dockyard's operators."""
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def can_manage_projects(user: AnyUser) -> bool:
    """May `user` add projects, change their settings and secrets, and grant them more?"""
    return is_operator(user)


def require_project_manager(user: AnyUser, *, to: str) -> None:
    """Raise AccessDenied unless `user` may manage projects; `to` says what they tried."""
    if not can_manage_projects(user):
        raise AccessDenied(f"only operators may {to}")
