"""The registry adapter: ask a Docker registry (the distribution HTTP API v2) what it holds.

Pushing and pulling go through the Docker engine; this adapter only looks things up, so a
worker can tell "the registry has this cached base" from "the registry is down".
"""

from dataclasses import dataclass

import requests
from django.conf import settings

# A registry answers a manifest HEAD with the digest of the format the client accepts; these
# are the formats the Docker engine pushes.
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
TIMEOUT_SECONDS = 10


class RegistryError(Exception):
    """The registry could not be reached or answered something unexpected."""


@dataclass(frozen=True)
class ImageName:
    """`127.0.0.1:5000/acme/web` split into the registry and the repository path."""

    registry: str
    path: str

    @classmethod
    def parse(cls, repository: str) -> "ImageName":
        registry, _, path = repository.partition("/")
        if not path:
            raise RegistryError(f"{repository!r} names no registry (expected host[:port]/path)")
        return cls(registry=registry, path=path)


def manifest_digest(repository: str, reference: str) -> str | None:
    """The digest of repository:reference in its registry, or None when it holds no such tag."""
    name = ImageName.parse(repository)
    url = f"{_base_url(name.registry)}/v2/{name.path}/manifests/{reference}"
    try:
        response = requests.head(
            url,
            headers={"Accept": MANIFEST_TYPES},
            auth=registry_credentials(name.registry),
            timeout=TIMEOUT_SECONDS,
        )
    except requests.RequestException as error:
        raise RegistryError(f"registry {name.registry} unreachable: {error}") from None
    if response.status_code == 404:
        return None
    if response.status_code == 401:
        raise RegistryError(
            f"registry {name.registry} refused Dockyard's login for {repository} (401): check "
            "DOCKYARD_REGISTRY_USERNAME and DOCKYARD_REGISTRY_PASSWORD"
        )
    if response.status_code != 200:
        raise RegistryError(
            f"registry {name.registry} answered {response.status_code} for {repository}:{reference}"
        )
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RegistryError(f"registry {name.registry} sent no digest for {repository}:{reference}")
    return digest


def repository_tags(repository: str) -> list[str]:
    """The tags the registry holds for `repository` (none when it holds no such repository)."""
    name = ImageName.parse(repository)
    url = f"{_base_url(name.registry)}/v2/{name.path}/tags/list"
    try:
        response = requests.get(
            url, auth=registry_credentials(name.registry), timeout=TIMEOUT_SECONDS
        )
    except requests.RequestException as error:
        raise RegistryError(f"registry {name.registry} unreachable: {error}") from None
    if response.status_code == 404:
        return []
    if response.status_code != 200:
        raise RegistryError(
            f"registry {name.registry} answered {response.status_code} for {repository}'s tags"
        )
    try:
        return list(response.json().get("tags") or [])
    except ValueError:
        raise RegistryError(f"registry {name.registry} sent no tag list for {repository}") from None


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """Dockyard's registry account, for its own registry only."""
    if not settings.DOCKYARD_REGISTRY_USERNAME or registry != settings.DOCKYARD_REGISTRY:
        return None
    return settings.DOCKYARD_REGISTRY_USERNAME, settings.DOCKYARD_REGISTRY_PASSWORD


def _base_url(registry: str) -> str:
    # Docker itself talks plain HTTP to loopback registries and TLS to every other one.
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if host in {"127.0.0.1", "localhost", "[::1]"} or host.startswith("127."):
        return f"http://{registry}"
    return f"https://{registry}"
