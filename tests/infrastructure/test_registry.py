"""The registry adapter against the real registry."""

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings

from infrastructure.registry import (
    ImageName,
    RegistryError,
    blobs_mount,
    image_tag,
    manifest_delete,
    manifest_digest,
    manifest_get,
    repository_tags,
)
from tests.conftest import registry_login
from tests.factories import busybox_app_repo

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker


def test_an_unknown_tag_is_none_not_an_error() -> None:
    repository = f"{settings.DOCKYARD_REGISTRY}/no-such-{uuid.uuid4().hex[:8]}"
    assert manifest_digest(repository, "latest") is None


def test_an_unreachable_registry_is_an_error_naming_it() -> None:
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:1 unreachable"):
        manifest_digest("127.0.0.1:1/acme/web", "latest")


def test_a_repository_without_a_registry_is_refused() -> None:
    with pytest.raises(RegistryError, match="names no registry"):
        ImageName.parse("web")


def test_docker_hub_names_read_as_the_engine_reads_them() -> None:
    assert ImageName.of_reference("python") == ImageName("docker.io", "library/python")
    assert ImageName.of_reference("acme/web") == ImageName("docker.io", "acme/web")
    assert ImageName.of_reference("ghcr.io/acme/web") == ImageName("ghcr.io", "acme/web")
    assert ImageName.of_reference("localhost:5000/web") == ImageName("localhost:5000", "web")


def test_tagging_in_the_registry_moves_no_layer_and_keeps_the_digest(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    namespace = f"{settings.DOCKYARD_REGISTRY}/tag-{uuid.uuid4().hex[:8]}"
    source = f"{namespace}/candidates/app"
    digest = pushed_busybox(docker_client, tmp_path, source, "run-1")

    tagged = image_tag(
        source_repository=source, digest=digest, repository=namespace, tags=["v1", "main"]
    )

    assert tagged == digest
    assert manifest_digest(namespace, "v1") == digest
    assert manifest_digest(namespace, "main") == digest
    assert manifest_delete(source, digest) is True
    # The candidate went; the tag in the other repository stands, blobs and all.
    assert manifest_digest(source, "run-1") is None
    assert manifest_get(namespace, "v1") is not None
    pulled = docker_client.images.pull(namespace, tag="v1", auth_config=auth())
    assert f"{namespace}@{digest}" in pulled.attrs["RepoDigests"]


def test_an_image_whose_blobs_were_linked_ahead_shows_nowhere_until_it_is_tagged(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    namespace = f"{settings.DOCKYARD_REGISTRY}/ahead-{uuid.uuid4().hex[:8]}"
    source = f"{namespace}/candidates/app"
    digest = pushed_busybox(docker_client, tmp_path, source, "run-1")

    blobs_mount(source_repository=source, digest=digest, repository=namespace)

    assert repository_tags(namespace) == []
    assert manifest_get(namespace, digest) is None
    tagged = image_tag(source_repository=source, digest=digest, repository=namespace, tags=["v1"])
    assert tagged == digest
    assert manifest_digest(namespace, "v1") == digest
    pulled = docker_client.images.pull(namespace, tag="v1", auth_config=auth())
    assert f"{namespace}@{digest}" in pulled.attrs["RepoDigests"]


def test_tagging_an_image_the_registry_does_not_hold_is_an_error_naming_it() -> None:
    namespace = f"{settings.DOCKYARD_REGISTRY}/absent-{uuid.uuid4().hex[:8]}"
    digest = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match=f"candidates/app@{digest} is not in the registry"):
        image_tag(
            source_repository=f"{namespace}/candidates/app",
            digest=digest,
            repository=namespace,
            tags=["v1"],
        )


def test_a_registry_over_tls_is_trusted_with_its_ca_and_refused_without_it(
    settings: Any, tls_registry: str
) -> None:
    settings.DOCKYARD_REGISTRY = tls_registry
    repository = f"{tls_registry}/acme/web"
    with pytest.raises(RegistryError, match="DOCKYARD_REGISTRY_CA_FILE"):
        manifest_digest(repository, "latest")

    settings.DOCKYARD_REGISTRY_CA_FILE = str(TLS_DIR / "ca.pem")
    assert manifest_digest(repository, "latest") is None  # asked over TLS, logged in

    settings.DOCKYARD_REGISTRY_PASSWORD = "not-the-password"
    with pytest.raises(RegistryError, match="refused Dockyard's login"):
        manifest_digest(repository, "latest")


def auth() -> dict[str, str] | None:
    login = registry_login()
    return {"username": login[0], "password": login[1]} if login else None


def pushed_busybox(client: docker.DockerClient, tmp_path: Path, repository: str, tag: str) -> str:
    context = tmp_path / "context"
    busybox_app_repo(context)
    client.images.build(path=str(context), tag=f"{repository}:{tag}", rm=True)
    client.images.push(repository, tag=tag, auth_config=auth())
    found = manifest_digest(repository, tag)
    assert found is not None
    return found


TLS_DIR = Path(__file__).resolve().parents[2] / "data" / "test" / "registry-tls"


@pytest.fixture(scope="module")
def tls_registry() -> Iterator[str]:
    """A second registry, over TLS with a certificate of a CA of its own, with the same login."""
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    openssl = ["openssl", "req", "-nodes", "-newkey", "rsa:2048", "-days", "2"]
    subprocess.run(
        [
            *openssl,
            "-x509",
            "-subj",
            "/CN=test CA",
            "-keyout",
            str(TLS_DIR / "ca-key.pem"),
            "-out",
            str(TLS_DIR / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *openssl,
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(TLS_DIR / "key.pem"),
            "-out",
            str(TLS_DIR / "server.csr"),
        ],
        check=True,
        capture_output=True,
    )
    extensions = TLS_DIR / "extensions"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(TLS_DIR / "server.csr"),
            "-CA",
            str(TLS_DIR / "ca.pem"),
            "-CAkey",
            str(TLS_DIR / "ca-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extensions),
            "-out",
            str(TLS_DIR / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    environment = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": address,
        "REGISTRY_HTTP_TLS_CERTIFICATE": str(TLS_DIR / "cert.pem"),
        "REGISTRY_HTTP_TLS_KEY": str(TLS_DIR / "key.pem"),
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(TLS_DIR / "storage"),
    }
    process = subprocess.Popen(
        ["docker-registry", "serve", str(ROOT / "scripts" / "registry.yml")],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None and time.monotonic() < deadline, "no TLS registry"
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
