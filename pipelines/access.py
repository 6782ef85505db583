"""Who may start, cancel and retry runs: operators (staff), for every project alike.
`can_*` answers; `require_*` raises AccessDenied naming who may."""

from projects.access import AccessDenied, AnyUser, is_operator


def can_control_runs(user: AnyUser) -> bool:
    """May `user` start, cancel and retry runs?"""
    return is_operator(user)


def require_run_controller(user: AnyUser, *, to: str) -> None:
    """Raise AccessDenied unless `user` may control runs; `to` says what they tried."""
    if not can_control_runs(user):
        raise AccessDenied(f"only operators may {to}")
