"""The image stack through the real worker, engine and registry: base caching and ONBUILD."""

import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import docker
import pytest
from django.conf import settings

from builds.models import CacheSource, LayerBuild
from pipelines.models import PipelineRun
from pipelines.selectors import stage_log_text
from pipelines.states import RunStatus
from tests.conftest import pulled
from tests.factories import make_project, stack_repo

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

# Each base has a folder of its own: a file in a layer's context is an input of that layer.
THREE_LAYER_SPEC = """\
images:
  os:
    dockerfile: layers/os/Dockerfile
    context: layers/os
  runtime:
    dockerfile: layers/runtime/Dockerfile
    context: layers/runtime
    from: os
  app:
    dockerfile: Dockerfile
    from: runtime
test:
  command: ["sh", "/app/test.sh"]
"""
# The bottom layer: ONBUILD triggers fire in the layer directly above, so only the runtime,
# which the app builds on, carries them.
OS_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
"""
RUNTIME_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN echo "runtime 1" > /runtime.txt
ONBUILD COPY app/ /app/
"""


def sources(run: PipelineRun) -> dict[str, str]:
    return dict(LayerBuild.objects.filter(run=run).values_list("name", "source"))


def file_in_image(client: docker.DockerClient, image: str, path: str) -> str:
    output = client.containers.run(
        pulled(client, image), ["cat", path], network_mode="none", remove=True
    )
    return output.decode()


@pytest.fixture
def worker(celery_worker: str) -> str:
    return celery_worker


def test_a_base_is_built_once_then_reused_and_only_the_app_rebuilds(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
    registry_tags: Callable[[str], list[str]],
) -> None:
    repo = stack_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    first = pushed_run(project, repo.commit("first"))
    assert first.status == RunStatus.SUCCEEDED, first.failure_reason
    base = LayerBuild.objects.get(run=first, name="base")
    assert (base.source, base.cache_hit) == (CacheSource.BUILT, False)
    assert base.cache_key in registry_tags(f"{project.slug}/base")
    assert base.reference.startswith(f"{settings.DOCKYARD_REGISTRY}/{project.slug}/base@sha256:")

    repo.write("app/version.txt", "2\n")
    second = pushed_run(project, repo.commit("one-line app change"))

    assert second.status == RunStatus.SUCCEEDED, second.failure_reason
    assert sources(second) == {"base": CacheSource.LOCAL, "app": CacheSource.BUILT}
    again = LayerBuild.objects.get(run=second, name="base")
    assert (again.cache_key, again.reference) == (base.cache_key, base.reference)
    assert file_in_image(docker_client, second.image_reference, "/app/version.txt") == "2\n"


def test_the_onbuild_instructions_of_the_base_run_in_the_app_build(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = stack_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    run = pushed_run(project, repo.commit("first"))
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert file_in_image(docker_client, run.image_reference, "/app/version.txt") == "1\n"
    assert file_in_image(docker_client, run.image_reference, "/app/onbuild.txt") == "onbuild ran\n"


def test_a_worker_without_the_base_takes_it_from_the_registry(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = stack_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    first = pushed_run(project, repo.commit("first"))
    base = LayerBuild.objects.get(run=first, name="base")
    # As if the next run landed on another worker: this engine no longer knows the base, by
    # its cache tag or by its digest (the app image built on it keeps its layers alive).
    docker_client.images.remove(f"{base.reference.partition('@')[0]}:{base.cache_key}")
    with suppress(docker.errors.ImageNotFound):  # went with its last tag
        docker_client.images.remove(base.reference)
    assert not [i for i in docker_client.images.list() if base.reference in i.attrs["RepoDigests"]]

    repo.write("app/version.txt", "2\n")
    second = pushed_run(project, repo.commit("change"))

    assert second.status == RunStatus.SUCCEEDED, second.failure_reason
    assert sources(second)["base"] == CacheSource.REGISTRY
    assert "cache hit in the registry" in stage_log_text(second.stages.get(name="build"))


def test_changing_a_base_rebuilds_it_and_everything_above_it(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = stack_repo(tmp_path / "repo", spec=THREE_LAYER_SPEC)
    (repo.path / "docker").rename(repo.path / "layers")
    (repo.path / "layers" / "os").mkdir()
    (repo.path / "layers" / "busybox").rename(repo.path / "layers" / "os" / "busybox")
    repo.write("layers/os/Dockerfile", OS_DOCKERFILE)
    repo.write("layers/runtime/Dockerfile", RUNTIME_DOCKERFILE)
    repo.write(".dockerignore", "layers/\n")
    project = make_project(repository_url=repo.url)
    first = pushed_run(project, repo.commit("first"))
    assert sources(first) == {"os": "built", "runtime": "built", "app": "built"}

    # Only an ONBUILD line of the middle layer changes.
    repo.write("layers/runtime/Dockerfile", RUNTIME_DOCKERFILE + "ONBUILD RUN true\n")
    second = pushed_run(project, repo.commit("runtime change"))
    assert second.status == RunStatus.SUCCEEDED, second.failure_reason
    assert sources(second) == {"os": "local", "runtime": "built", "app": "built"}

    repo.write("layers/os/Dockerfile", OS_DOCKERFILE + "ENV LANG=C.UTF-8\n")
    third = pushed_run(project, repo.commit("os change"))
    assert third.status == RunStatus.SUCCEEDED, third.failure_reason
    assert sources(third) == {"os": "built", "runtime": "built", "app": "built"}
    keys = {
        run.pk: dict(LayerBuild.objects.filter(run=run).values_list("name", "cache_key"))
        for run in (first, second, third)
    }
    assert keys[first.pk]["os"] == keys[second.pk]["os"] != keys[third.pk]["os"]
    assert len({keys[r]["runtime"] for r in keys}) == 3


def test_a_change_to_a_file_the_base_context_ignores_does_not_rebuild_it(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = stack_repo(tmp_path / "repo")
    repo.write("docker/.dockerignore", "notes.txt\n")
    repo.write("docker/notes.txt", "first\n")
    project = make_project(repository_url=repo.url)
    pushed_run(project, repo.commit("first"))

    repo.write("docker/notes.txt", "second\n")
    second = pushed_run(project, repo.commit("ignored change"))
    assert sources(second)["base"] == CacheSource.LOCAL

    repo.write("docker/extra.txt", "new file\n")
    third = pushed_run(project, repo.commit("context change"))
    assert sources(third)["base"] == CacheSource.BUILT


def test_each_layer_records_its_key_digest_duration_and_size(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = stack_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    run = pushed_run(project, repo.commit("first"))
    base, app = LayerBuild.objects.filter(run=run).order_by("position")
    assert (base.name, base.role, len(base.cache_key)) == ("base", "base", 64)
    assert (app.name, app.role, app.parent, app.cache_key) == ("app", "app", "base", "")
    assert base.size_bytes > 1_000_000  # the static busybox
    assert base.duration_seconds > 0 and app.duration_seconds > 0
    build_log = stage_log_text(run.stages.get(name="build"))
    assert f"building FROM {base.reference}" in build_log
    assert "base: cache miss" in build_log


def test_build_output_reaches_the_log_while_the_build_still_runs(
    tmp_path: Path,
    worker: str,
    push: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
) -> None:
    repo = stack_repo(tmp_path / "repo")
    # A step no earlier build ran: the engine's layer cache would answer it without output.
    repo.write("Dockerfile", APP_SLOW_DOCKERFILE.replace("NONCE", uuid.uuid4().hex))
    project = make_project(repository_url=repo.url)
    run = push(project, repo.commit("slow build"))
    build = run.stages.get(name="build")
    seen_while_running = False
    for _ in range(600):
        build.refresh_from_db()
        if build.status in ("succeeded", "failed"):
            break
        if "early line" in stage_log_text(build) and build.status == "running":
            seen_while_running = True
            break
        time.sleep(0.05)
    run = wait_for_run(run)
    assert seen_while_running, (run.status, run.failure_reason, stage_log_text(build))
    assert run.status == RunStatus.SUCCEEDED


APP_SLOW_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN echo "early line NONCE" && sleep 4 && echo "late line"
"""
