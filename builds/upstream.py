"""Images outside the stack that a layer builds FROM (`FROM python:3.11`), resolved to digests.

A tag outside Dockyard's control moves (a new OpenSSL in python:3.11): the base built on it
must then rebuild, so its cache key takes the digest the reference points at *now*. Each
reference is pulled first, so that the engine's copy is the registry's current one; one that
cannot be pulled (no such registry from here, offline) is taken as the engine has it.
"""

from collections.abc import Iterable
from functools import partial

from builds.build_log import BuildLog
from builds.dockerfile import reference_parts
from builds.errors import BuildFailure
from infrastructure.docker_engine import ContainerEngine, DockerEngineError


def upstream_resolve(
    references: Iterable[str], *, engine: ContainerEngine, log: BuildLog
) -> dict[str, str]:
    """{reference: digest} of each outside image, present on the engine afterwards.

    The digest is the registry's manifest digest when the engine has one for it, else the
    image id (an image built on this engine and never pushed: its content still decides).
    """
    digests: dict[str, str] = {}
    for reference in references:
        repository, tag = reference_parts(reference)
        try:
            log.stream(partial(engine.pull_image, repository=repository, tag=tag, on_output=_quiet))
        except DockerEngineError as error:
            log.line(f"FROM {reference}: not pulled ({error}); using this engine's copy")
        info = engine.image_info(reference)
        if info is None:
            raise BuildFailure(f"FROM {reference}: not on this engine and it could not be pulled")
        digest = tag if tag.startswith("sha256:") else (info.digest_in(repository) or info.id)
        log.line(f"FROM {reference}: {digest}")
        digests[reference] = digest
    return digests


def _quiet(_: str) -> None:
    """Pull progress is noise in a build log; the resolved digest is said instead."""
