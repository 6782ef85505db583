"""Images of real services for tests that need them (PostgreSQL, Redis), made offline.

No image can be pulled from Docker Hub here: a Debian root filesystem with `postgresql` and
`redis-server` is made with debootstrap (from Debian's mirror, which this machine reaches),
imported into the engine and pushed to the suite's registry, once: a later session finds it
there and builds nothing.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import requests
from django.conf import settings

from tests.conftest import registry_login

INFRA_IMAGE = f"{settings.DOCKYARD_REGISTRY}/infra/pg-redis:15"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Commands the services of these tests run (as their own users: services get no capabilities).
POSTGRES_COMMAND = [
    "sh",
    "-c",
    "initdb -D /tmp/pgdata -U postgres --auth=trust >/tmp/initdb.log "
    "&& exec postgres -D /tmp/pgdata -k /tmp -c listen_addresses=127.0.0.1",
]
REDIS_COMMAND = ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", ""]


def infra_image_ensure(client: docker.DockerClient) -> str:
    """INFRA_IMAGE, in the registry (built and pushed when it is not)."""
    if _in_registry(INFRA_IMAGE):
        return INFRA_IMAGE
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=postgresql,redis-server",
                "bookworm",
                str(root),
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        for leftover in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            shutil.rmtree(root / leftover, ignore_errors=True)
        archive = Path(folder) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        repository, _, tag = INFRA_IMAGE.rpartition(":")
        client.api.import_image_from_file(
            str(archive),
            repository=repository,
            tag=tag,
            changes=[
                "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:"
                "/usr/sbin:/usr/bin:/sbin:/bin",
                "WORKDIR /",
            ],
        )
    login = registry_login()
    auth = {"username": login[0], "password": login[1]} if login else None
    for line in client.images.push(repository, tag, auth_config=auth, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {INFRA_IMAGE}: {line['error']}")
    return INFRA_IMAGE


def _in_registry(reference: str) -> bool:
    repository, _, tag = reference.rpartition(":")
    registry, _, path = repository.partition("/")
    response = requests.head(
        f"http://{registry}/v2/{path}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=registry_login(),
        timeout=10,
    )
    return response.status_code == 200
