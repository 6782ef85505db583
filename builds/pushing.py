"""Putting images into the registry through a registry that may be briefly down (restarting,
overloaded): each push, and each registry-side tagging, is tried again with doubling waits
(DOCKYARD_PUSH_ATTEMPTS, DOCKYARD_PUSH_BACKOFF_SECONDS, capped), then given up saying so; a
registry that answers with a refusal fails at once."""

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from django.conf import settings

from builds.build_log import BuildLog
from builds.errors import BuildCancelled, BuildFailure
from infrastructure.docker_engine import ContainerEngine, RegistryUnreachable
from infrastructure.registry import RegistryError, RegistryUnavailable

PUSH_BACKOFF_CAP = 30.0

Result = TypeVar("Result")


def image_push(
    engine: ContainerEngine, log: BuildLog, *, image_id: str, repository: str, tag: str
) -> str:
    """Push `image_id` from `engine` as repository:tag; its digest in the registry."""
    push = partial(
        engine.push_image, image_id=image_id, repository=repository, tag=tag, on_output=log.write
    )
    return log.stream(lambda: registry_retrying(push, log, what=f"{repository}:{tag}"))


def registry_retrying(call: Callable[[], Result], log: BuildLog, *, what: str) -> Result:
    """`call()`, tried again while the registry cannot be reached; BuildFailure when it stays
    away or refuses, BuildCancelled when the run is cancelled while waiting."""
    attempts = settings.DOCKYARD_PUSH_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (RegistryUnreachable, RegistryUnavailable) as error:
            if attempt == attempts:
                raise BuildFailure(
                    f"the registry for {what} is unreachable; gave up after {attempts} "
                    f"attempts: {error}"
                ) from None
            delay = min(
                settings.DOCKYARD_PUSH_BACKOFF_SECONDS * 2 ** (attempt - 1), PUSH_BACKOFF_CAP
            )
            log.line(
                f"the registry is unreachable ({error}); retrying in {delay:g}s "
                f"(attempt {attempt + 1} of {attempts})"
            )
            if log.stop_requested.wait(delay):
                raise BuildCancelled() from None
        except RegistryError as error:
            raise BuildFailure(f"{what}: {error}") from None
    raise AssertionError("unreachable: the loop returns or raises")
