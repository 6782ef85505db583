"""A base built FROM an image outside the stack: when that tag moves in its registry (a new
OpenSSL), the base and everything above it rebuild; while it stays, nothing does."""

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from django.conf import settings

from builds.models import CacheSource, LayerBuild
from pipelines.models import PipelineRun
from pipelines.states import RunStatus
from tests.conftest import pulled, registry_login
from tests.factories import BUSYBOX, GitRepo, make_project

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

SPEC = """\
images:
  base:
    dockerfile: base/base.Dockerfile
    context: base
  app:
    dockerfile: Dockerfile
    from: base
test:
  command: ["sh", "-c", "cat /upstream.txt /app/version.txt"]
"""


def upstream_push(client: docker.DockerClient, folder: Path, reference: str, version: str) -> str:
    """Build a tiny image saying `version` and push it as `reference`; its digest."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, folder / "busybox")
    (folder / "upstream.txt").write_text(f"upstream {version}\n")
    (folder / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n'
        "COPY upstream.txt /upstream.txt\n"
    )
    image, _ = client.images.build(path=str(folder), rm=True)
    repository, _, tag = reference.rpartition(":")
    image.tag(repository, tag)
    login = registry_login()
    auth = {"username": login[0], "password": login[1]} if login else None
    for line in client.images.push(repository, tag, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    pushed = client.images.get(reference)
    return next(d for d in pushed.attrs["RepoDigests"] if d.startswith(repository)).split("@")[1]


def file_in(client: docker.DockerClient, image: str, path: str) -> str:
    return client.containers.run(
        pulled(client, image), ["cat", path], network_mode="none", remove=True
    ).decode()


def test_moving_the_upstream_tag_rebuilds_the_base_and_all_above_it(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    upstream = f"{settings.DOCKYARD_REGISTRY}/infra-{uuid.uuid4().hex[:8]}/tools:1"
    first_digest = upstream_push(docker_client, tmp_path / "v1", upstream, "v1")
    repo = GitRepo(tmp_path / "repo")
    repo.write("base/base.Dockerfile", f"FROM {upstream}\nONBUILD COPY app/ /app/\n")
    repo.write(".dockerignore", "base/\n")
    repo.write("Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    repo.write("app/version.txt", "app 1\n")
    repo.write("dockyard.yml", SPEC)
    project = make_project(repository_url=repo.url)

    first = pushed_run(project, repo.commit("first"))
    assert first.status == RunStatus.SUCCEEDED, first.failure_reason
    base = LayerBuild.objects.get(run=first, name="base")
    assert base.source == CacheSource.BUILT
    assert base.upstream == {upstream: first_digest}

    repo.write("app/version.txt", "app 2\n")
    second = pushed_run(project, repo.commit("app change"))
    assert LayerBuild.objects.get(run=second, name="base").source == CacheSource.LOCAL

    # Upstream publishes a fix under the same tag; the project's repository does not change.
    second_digest = upstream_push(docker_client, tmp_path / "v2", upstream, "v2")
    repo.write("app/version.txt", "app 3\n")
    third = pushed_run(project, repo.commit("another app change"))

    assert third.status == RunStatus.SUCCEEDED, third.failure_reason
    rebuilt = LayerBuild.objects.get(run=third, name="base")
    assert rebuilt.source == CacheSource.BUILT
    assert rebuilt.upstream == {upstream: second_digest}
    assert rebuilt.cache_key != base.cache_key
    assert file_in(docker_client, third.image_reference, "/upstream.txt") == "upstream v2\n"
    assert LayerBuild.objects.get(run=third, name="app").source == CacheSource.BUILT
