"""Who did something: a user when there is one, and always a label naming the channel.

Edges that know who acts (an API view, a chat command, a management command) pass an Actor to
the services. Changes that arrive through Django's own machinery (the admin saving a user's
groups, an environment's deployers) reach the audit log through signals, which cannot be told
who acts: for those, `current_actor()` answers from the context the edge set with `acting_as`
(the middleware does it for every HTTP request).
"""

import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework.authentication import TokenAuthentication

AnyUser = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class Actor:
    # "api-token:alice", "chat:slack:U024BE7LH", "admin:alice", "cli:root", "system", ...
    label: str
    # The Dockyard user acting, when there is one (a chat user acts as the user linked to them).
    user: AbstractBaseUser | None = None


SYSTEM = Actor("system")
WEBHOOK = Actor("webhook")

# Resolved only when something is recorded: most requests record nothing, and DRF
# authenticates a token inside the view, after the middleware has run.
_current: ContextVar[Callable[[], Actor] | None] = ContextVar("audit_actor", default=None)


def user_actor(channel: str, user: AnyUser | None) -> Actor:
    """`channel:username` for a signed-in user; `channel:anonymous` otherwise."""
    if user is None or not user.is_authenticated:
        return Actor(f"{channel}:anonymous")
    assert isinstance(user, AbstractBaseUser)
    return Actor(f"{channel}:{user.get_username()}", user)


def request_actor(request: Any) -> Actor:
    """The actor of an HTTP request (Django's or DRF's), named after the way in."""
    path = getattr(request, "path", "")
    if path.startswith("/webhooks/"):
        return WEBHOOK
    user = getattr(request, "user", None)
    if path.startswith("/admin/"):
        return user_actor("admin", user)
    if path.startswith("/api/"):
        # DRF's request knows how it authenticated; under it, Django's request only has the
        # header, and an authenticated user with a Token header authenticated with the token.
        authenticator = getattr(request, "successful_authenticator", None)
        header = request.META.get("HTTP_AUTHORIZATION", "") if hasattr(request, "META") else ""
        by_token = isinstance(authenticator, TokenAuthentication) or header.startswith("Token ")
        return user_actor("api-token" if by_token else "api-session", user)
    return user_actor("web", user)


def chat_actor(*, provider: str, external_id: str, user: AnyUser | None) -> Actor:
    """A chat account, acting with the rights of the Dockyard user linked to it (if any)."""
    linked = user if isinstance(user, AbstractBaseUser) and user.is_authenticated else None
    return Actor(f"chat:{provider}:{external_id}", linked)


def cli_actor(user: AbstractBaseUser | None = None) -> Actor:
    """Someone at this machine's shell running manage.py, as the operating-system user."""
    return Actor(f"cli:{_os_user()}", user)


@contextmanager
def acting_as(actor: Actor | Callable[[], Actor]) -> Iterator[None]:
    """Attribute whatever is recorded inside the block (signals included) to `actor`."""
    token = _current.set(actor if callable(actor) else (lambda: actor))
    try:
        yield
    finally:
        _current.reset(token)


def current_actor(user: AnyUser | None = None) -> Actor:
    """The actor the context names, else this process's own (a shell's user, or the system).

    `user`, when the caller knows one the context does not, is attached to the label.
    """
    resolve = _current.get()
    actor = resolve() if resolve is not None else _process_actor()
    if actor.user is None and isinstance(user, AbstractBaseUser) and user.is_authenticated:
        return Actor(actor.label, user)
    return actor


def _process_actor() -> Actor:
    # `manage.py shell`, `createsuperuser`, `drf_create_token`: a person at the shell. The web
    # server and the workers run under uvicorn and celery, where nobody types.
    if sys.argv and Path(sys.argv[0]).name == "manage.py":
        return cli_actor()
    return SYSTEM


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container user without a passwd entry.
        return f"uid{os.getuid()}"
