"""The registry adapter: talk to a Docker registry (the distribution HTTP API v2) directly.

The engines push and pull layers; this adapter looks things up (is this cached base there,
where does this upstream tag point now) and moves manifests only: tagging an image the registry
already holds is a manifest put, with its blobs mounted from the repository that has them, so
no layer moves twice. Dockyard's own registry is asked with its account (basic auth); any
registry that answers 401 with a Bearer challenge (Docker Hub, GHCR, GitLab) gets a token
first. TLS is verified with DOCKYARD_REGISTRY_CA_FILE, or the system's CAs; a loopback registry
without a CA configured is plain HTTP, as the Docker engine treats it.
"""

import ipaddress
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

# A registry answers a manifest request with the format the client accepts; these are the
# formats the Docker engine pushes, and the lists and indexes of multi-platform images.
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
TIMEOUT_SECONDS = 10
# Docker Hub's names: `python:3.11` is docker.io/library/python, served by registry-1.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Requests to one registry at once within one operation (an image's blob mounts, its tags).
PARALLEL_REQUESTS = 4

_CHALLENGE_PARAMETER = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry could not be reached or answered something unexpected."""


class RegistryUnavailable(RegistryError):
    """The registry did not answer (down, restarting): worth trying again."""


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

    @classmethod
    def of_reference(cls, repository: str) -> "ImageName":
        """As the Docker engine reads a repository: `python` is Docker Hub's library/python,
        `acme/web` Docker Hub's acme/web, `ghcr.io/acme/web` GHCR's."""
        first, _, rest = repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, repository if rest else f"library/{repository}"
        return cls(registry=registry, path=path)

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}"


@dataclass(frozen=True)
class Manifest:
    media_type: str
    body: bytes
    digest: str

    def blob_digests(self) -> list[str]:
        """The config and layers an image manifest names (none for a list or index)."""
        document = json.loads(self.body)
        blobs = [document["config"]["digest"]] if "config" in document else []
        return blobs + [layer["digest"] for layer in document.get("layers", [])]


def manifest_digest(repository: str, reference: str) -> str | None:
    """The digest of repository:reference in its registry, or None when it holds no such tag."""
    name = ImageName.parse(repository)
    response = _request(
        "HEAD",
        name,
        f"manifests/{reference}",
        scope="pull",
        headers={"Accept": MANIFEST_TYPES},
    )
    if response.status_code == 404:
        return None
    _expect(response, 200, name, f"{repository}:{reference}")
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        raise RegistryError(f"registry {name.registry} sent no digest for {repository}:{reference}")
    return digest


def upstream_digest(repository: str, reference: str) -> str | None:
    """Where an outside image's tag points now (`python`, `3.11` asks Docker Hub), or None
    when its registry holds no such tag."""
    name = ImageName.of_reference(repository)
    registry = DOCKER_HUB_API if name.registry == DOCKER_HUB else name.registry
    return manifest_digest(f"{registry}/{name.path}", reference)


def manifest_get(repository: str, reference: str) -> Manifest | None:
    """The manifest of repository:reference (a tag or digest) as stored, or None."""
    name = ImageName.parse(repository)
    response = _request(
        "GET", name, f"manifests/{reference}", scope="pull", headers={"Accept": MANIFEST_TYPES}
    )
    if response.status_code == 404:
        return None
    _expect(response, 200, name, f"{repository}:{reference}")
    if len(response.content) > MAX_MANIFEST_BYTES:
        raise RegistryError(f"the manifest of {repository}:{reference} is too large")
    return Manifest(
        media_type=response.headers.get("Content-Type", "").split(";")[0],
        body=response.content,
        digest=response.headers.get("Docker-Content-Digest", ""),
    )


def image_tag(*, source_repository: str, digest: str, repository: str, tags: Sequence[str]) -> str:
    """Tag the image source_repository@digest as repository:tag for each of `tags`, inside one
    registry, in one operation: the manifest read once and put under every tag side by side,
    its blobs mounted (no data moves) when `repository` does not have them yet. Returns the
    digest the registry now gives each tag, which is `digest`: the same bytes."""
    source, target = _one_registry(source_repository, repository)
    manifest = _manifest_of(source_repository, digest)
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as requests_at_once:
        # The puts go first: blobs_mount has usually linked the blobs already, beside the
        # tests, and then tagging is these requests alone. A registry that lacks a blob in
        # `repository` refuses the manifest and stores nothing, so mounting then putting
        # again is the whole cost of guessing wrong.
        if _manifests_put(requests_at_once, target, tags, manifest, digest):
            return digest
        if source.path == target.path:
            raise RegistryError(f"{repository}@{digest}: the registry lacks its blobs")
        _blobs_mounted(requests_at_once, manifest, source, target)
        if not _manifests_put(requests_at_once, target, tags, manifest, digest):
            raise RegistryError(
                f"the registry refused {repository}@{digest} for unknown blobs after mounting "
                f"them from {source_repository}"
            )
    return digest


def blobs_mount(*, source_repository: str, digest: str, repository: str) -> None:
    """Link the blobs of the image source_repository@digest into `repository` (mounts inside
    one registry: no data moves), so that tagging it there later is its manifest puts alone.

    Blobs no manifest of `repository` refers to show nowhere in it (no tag, nothing to pull),
    and the registry's garbage collection removes the links of an image never tagged.
    """
    source, target = _one_registry(source_repository, repository)
    manifest = _manifest_of(source_repository, digest)
    if source.path != target.path:
        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as requests_at_once:
            _blobs_mounted(requests_at_once, manifest, source, target)


def _one_registry(source_repository: str, repository: str) -> tuple[ImageName, ImageName]:
    source, target = ImageName.parse(source_repository), ImageName.parse(repository)
    if source.registry != target.registry:
        raise RegistryError(
            f"{repository} is on another registry than {source_repository}; Dockyard tags "
            "images inside its own registry only"
        )
    return source, target


def _manifest_of(repository: str, digest: str) -> Manifest:
    manifest = manifest_get(repository, digest)
    if manifest is None:
        raise RegistryError(f"{repository}@{digest} is not in the registry")
    return manifest


def _blobs_mounted(
    requests_at_once: ThreadPoolExecutor, manifest: Manifest, source: ImageName, target: ImageName
) -> None:
    mounts = [
        requests_at_once.submit(_blob_mount, target, blob, source)
        for blob in manifest.blob_digests()
    ]
    for mount in mounts:
        mount.result()


def _manifests_put(
    requests_at_once: ThreadPoolExecutor,
    target: ImageName,
    tags: Sequence[str],
    manifest: Manifest,
    digest: str,
) -> bool:
    """Put the manifest under each tag; False when the registry lacks its blobs in `target`
    (then it stored none of them: each put is checked against the same blobs)."""
    puts = [requests_at_once.submit(_manifest_put, target, tag, manifest, digest) for tag in tags]
    return all([put.result() for put in puts])


def _manifest_put(target: ImageName, tag: str, manifest: Manifest, digest: str) -> bool:
    response = _request(
        "PUT",
        target,
        f"manifests/{tag}",
        scope="pull,push",
        headers={"Content-Type": manifest.media_type},
        data=manifest.body,
    )
    if response.status_code == 400 and _names_only_unknown_blobs(response):
        return False
    _expect(response, 201, target, f"{target.path}:{tag}")
    put_digest = response.headers.get("Docker-Content-Digest", "")
    if put_digest and put_digest != digest:
        raise RegistryError(
            f"the registry stored {target.path}:{tag} as {put_digest}, not {digest}"
        )
    return True


def _names_only_unknown_blobs(response: requests.Response) -> bool:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return False
    return bool(errors) and all(
        isinstance(error, dict) and error.get("code") == "MANIFEST_BLOB_UNKNOWN" for error in errors
    )


def manifest_delete(repository: str, digest: str) -> bool:
    """Delete a manifest (every tag of it in this repository); False when it was not there.
    Its blobs stay until the registry's garbage collection finds them unreferenced."""
    name = ImageName.parse(repository)
    response = _request("DELETE", name, f"manifests/{digest}", scope="pull,push,delete")
    if response.status_code == 404:
        return False
    if response.status_code == 405:
        raise RegistryError(
            f"registry {name.registry} does not allow deletes (REGISTRY_STORAGE_DELETE_ENABLED)"
        )
    _expect(response, 202, name, f"{repository}@{digest}")
    return True


def repository_tags(repository: str) -> list[str]:
    """The tags the registry holds for `repository` (none when it holds no such repository)."""
    name = ImageName.parse(repository)
    response = _request("GET", name, "tags/list", scope="pull")
    if response.status_code == 404:
        return []
    _expect(response, 200, name, f"{repository}'s tags")
    try:
        return list(response.json().get("tags") or [])
    except ValueError:
        raise RegistryError(f"registry {name.registry} sent no tag list for {repository}") from None


def registry_credentials(registry: str) -> tuple[str, str] | None:
    """Dockyard's registry account, for its own registry only."""
    if not settings.DOCKYARD_REGISTRY_USERNAME or registry != settings.DOCKYARD_REGISTRY:
        return None
    return settings.DOCKYARD_REGISTRY_USERNAME, settings.DOCKYARD_REGISTRY_PASSWORD


def _blob_mount(target: ImageName, digest: str, source: ImageName) -> None:
    response = _request(
        "POST",
        target,
        f"blobs/uploads/?mount={digest}&from={source.path}",
        scope=f"pull,push;{source.path}:pull",
    )
    if response.status_code == 201:
        return
    if response.status_code == 202:
        # The registry opened an upload instead of mounting: close it and say so (a registry
        # that cannot mount within itself cannot tag without moving layers).
        location = response.headers.get("Location", "")
        if location:
            _request("DELETE", target, location, scope="pull,push", absolute=True)
        raise RegistryError(
            f"registry {target.registry} did not mount {digest} from {source.path} into "
            f"{target.path}"
        )
    _expect(response, 201, target, f"a mount of {digest}")


def _request(
    method: str,
    name: ImageName,
    path: str,
    *,
    scope: str,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    absolute: bool = False,
) -> requests.Response:
    """One request to the registry, with its credentials; a Bearer challenge is answered with
    a token and the request sent again."""
    url = path if absolute and path.startswith("http") else _url(name, path, absolute=absolute)
    auth = registry_credentials(name.registry)
    options: dict[str, Any] = {"timeout": TIMEOUT_SECONDS, "verify": _verify(), "data": data}
    try:
        response = requests.request(method, url, headers=headers, auth=auth, **options)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and challenge.lower().startswith("bearer "):
            token = _token(name, challenge, scope, auth)
            response = requests.request(
                method,
                url,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                **options,
            )
    except requests.exceptions.SSLError as error:
        raise RegistryError(
            f"registry {name.registry}: its TLS certificate was not trusted ({error}); set "
            "DOCKYARD_REGISTRY_CA_FILE to the CA that signed it"
        ) from None
    except requests.RequestException as error:
        raise RegistryUnavailable(f"registry {name.registry} unreachable: {error}") from None
    return response


def _token(name: ImageName, challenge: str, scope: str, auth: tuple[str, str] | None) -> str:
    parameters = dict(_CHALLENGE_PARAMETER.findall(challenge))
    realm = parameters.get("realm")
    if not realm:
        raise RegistryError(f"registry {name.registry} asked for a token but named no realm")
    actions, _, extra = scope.partition(";")
    scopes = [f"repository:{name.path}:{actions}"] + ([f"repository:{extra}"] if extra else [])
    query: dict[str, Any] = {"scope": scopes}
    if "service" in parameters:
        query["service"] = parameters["service"]
    try:
        response = requests.get(
            realm, params=query, auth=auth, timeout=TIMEOUT_SECONDS, verify=_verify()
        )
    except requests.RequestException as error:
        raise RegistryUnavailable(f"the token service of {name.registry}: {error}") from None
    if response.status_code != 200:
        raise RegistryError(
            f"the token service of {name.registry} refused ({response.status_code})"
        )
    body = response.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryError(f"the token service of {name.registry} gave no token")
    return str(token)


def _expect(response: requests.Response, status: int, name: ImageName, what: str) -> None:
    if response.status_code == status:
        return
    if response.status_code == 401:
        raise RegistryError(
            f"registry {name.registry} refused Dockyard's login for {what} (401): check "
            "DOCKYARD_REGISTRY_USERNAME and DOCKYARD_REGISTRY_PASSWORD"
        )
    if response.status_code in {502, 503, 504}:
        raise RegistryUnavailable(f"registry {name.registry} answered {response.status_code}")
    if response.status_code == 400 and _speaks_tls(response):
        raise RegistryError(
            f"registry {name.registry} speaks TLS, and Dockyard spoke plain HTTP to it (a "
            "loopback registry without a CA configured): set DOCKYARD_REGISTRY_CA_FILE to the "
            "CA that signed its certificate"
        )
    raise RegistryError(f"registry {name.registry} answered {response.status_code} for {what}")


def _speaks_tls(response: requests.Response) -> bool:
    """Whether a 400 came from a TLS server spoken to in plain HTTP (a HEAD has no body to
    say so: the registry's root is asked)."""
    if not response.url.startswith("http://"):
        return False
    if b"HTTP request to an HTTPS server" in response.content:
        return True
    root = response.url.split("/v2/", 1)[0] + "/v2/"
    try:
        probe = requests.get(root, timeout=TIMEOUT_SECONDS)
    except requests.RequestException:
        return False
    return probe.status_code == 400 and "HTTPS server" in probe.text


def _url(name: ImageName, path: str, *, absolute: bool) -> str:
    base = _base_url(name.registry)
    if absolute:
        return f"{base}{path}"
    return f"{base}/v2/{name.path}/{path}"


def _verify() -> str | bool:
    return settings.DOCKYARD_REGISTRY_CA_FILE or True


def _base_url(registry: str) -> str:
    # Docker itself talks plain HTTP to loopback registries and TLS to every other one; with
    # a CA configured, Dockyard's own registry is TLS wherever it is.
    if settings.DOCKYARD_REGISTRY_CA_FILE and registry == settings.DOCKYARD_REGISTRY:
        return f"https://{registry}"
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if host == "localhost" or _is_loopback(host):
        return f"http://{registry}"
    return f"https://{registry}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
