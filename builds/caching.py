"""Folders a project's tests keep between runs of one branch (`test.cache`), as volumes.

One named volume per project, branch and folder, owned by Dockyard (labelled, never a host
path), so a project never sees another's cache and a branch never poisons another's.
"""

import hashlib

from django.conf import settings
from django.utils import timezone

from builds.models import CacheVolume
from infrastructure.docker_engine import ContainerEngine
from projects.models import Project

CACHE_LABEL = "dockyard.cache"


def cache_volumes(
    *, engine: ContainerEngine, project: Project, ref: str, paths: tuple[str, ...]
) -> dict[str, str]:
    """{volume: folder} for the test containers of `project`'s `ref`, made when missing; each
    noted as used now (retention prunes the unused)."""
    volumes: dict[str, str] = {}
    for path in paths:
        digest = hashlib.sha256(f"{ref}\0{path}".encode()).hexdigest()[:16]
        name = f"dockyard-cache-{settings.DOCKYARD_INSTANCE}-{project.slug}-{digest}"
        engine.volume_ensure(name, labels={CACHE_LABEL: "1", "dockyard.project": project.slug})
        CacheVolume.objects.update_or_create(
            project=project,
            branch=ref,
            path=path,
            defaults={"volume": name, "last_used_at": timezone.now()},
        )
        volumes[name] = path
    return volumes
