"""The raw docker CLI the benchmarks compare Dockyard with: Debian's, matching the engine, with
the legacy builder as Dockyard uses it, logged in to the registry with Dockyard's account."""

import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings

DOCKER = "/usr/bin/docker"


def docker(*args: str, cwd: Path | None = None) -> None:
    """Run `docker ARGS...`; CalledProcessError if it fails."""
    subprocess.run(
        [DOCKER, *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": _logged_in_config()},
    )


@cache
def _logged_in_config() -> str:
    """A docker config folder of the bench's own, logged in to the registry (once)."""
    folder = tempfile.mkdtemp(prefix="bench-docker-config-")
    if settings.DOCKYARD_REGISTRY_USERNAME:
        subprocess.run(
            [
                DOCKER,
                "--config",
                folder,
                "login",
                "--username",
                settings.DOCKYARD_REGISTRY_USERNAME,
                "--password-stdin",
                settings.DOCKYARD_REGISTRY,
            ],
            input=settings.DOCKYARD_REGISTRY_PASSWORD.encode(),
            check=True,
            capture_output=True,
        )
    return folder
