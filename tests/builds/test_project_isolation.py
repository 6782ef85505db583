"""One project cannot touch another's images: not by publishing into its namespace, not by
planting an image under its base cache key, not by meeting its branch tag through the tag
sanitiser. Each case with the real worker, engine and registry."""

import shutil
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings

from builds.models import BaseLayerRecord, CacheSource, LayerBuild
from builds.publishing import publish_blobs_prepare
from pipelines.models import PipelineRun
from pipelines.selectors import stage_log_text
from pipelines.states import RunStatus
from projects.spec import PublishSpec
from tests.conftest import pulled, registry_login
from tests.factories import BUSYBOX, busybox_app_repo, make_project, stack_repo

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

REGISTRY = settings.DOCKYARD_REGISTRY
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)
# The attacker's base: the same ONBUILD shape as the victim's, plus a mark of its own.
PLANTED_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
RUN echo planted > /planted.txt
ONBUILD COPY app/ /app/
"""


def registry_digest(name: str, tag: str) -> str | None:
    response = requests.head(
        f"http://{REGISTRY}/v2/{name}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        auth=registry_login(),
        timeout=10,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def file_in_image(client: docker.DockerClient, image: str, path: str) -> str:
    command = ["sh", "-c", f"cat {path} 2>/dev/null || echo absent"]
    return client.containers.run(
        pulled(client, image), command, network_mode="none", remove=True
    ).decode()


def test_a_project_cannot_publish_into_another_projects_namespace(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
) -> None:
    victim_repo = stack_repo(tmp_path / "victim")
    victim = make_project(repository_url=victim_repo.url)
    first = pushed_run(victim, victim_repo.commit("victim's base"))
    assert first.status == RunStatus.SUCCEEDED, first.failure_reason
    key = LayerBuild.objects.get(run=first, name="base").cache_key
    tags_before = {
        "base": registry_digest(f"{victim.slug}/base", key),
        "main": registry_digest(victim.slug, "main"),
    }

    attacker_repo = busybox_app_repo(tmp_path / "attacker")
    attacker = make_project(repository_url=attacker_repo.url)
    for repository, tag in ((f"{victim.slug}/base", key), (victim.slug, "main")):
        attacker_repo.write(
            "dockyard.yml",
            f"images:\n  app: {{}}\npublish:\n  repository: {REGISTRY}/{repository}\n"
            f'  tags: ["{tag}"]\n',
        )
        run = pushed_run(attacker, attacker_repo.commit(f"publish over {repository}"))

        assert run.status == RunStatus.FAILED
        assert run.failed_stage == "config"
        assert run.failure_reason == (
            f"dockyard.yml:4: publish.repository: '{REGISTRY}/{repository}' is outside this "
            f"project's namespace {REGISTRY}/{attacker.slug} (and its sub-repositories); an "
            "operator may grant the project another repository"
        )
    assert {
        "base": registry_digest(f"{victim.slug}/base", key),
        "main": registry_digest(victim.slug, "main"),
    } == tags_before
    assert registry_tags(attacker.slug) == []


def test_a_base_tag_someone_else_pushed_is_a_miss_rebuilt_and_pushed_again(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = stack_repo(tmp_path / "victim")
    project = make_project(repository_url=repo.url)
    first = pushed_run(project, repo.commit("first"))
    assert first.status == RunStatus.SUCCEEDED, first.failure_reason
    base = LayerBuild.objects.get(run=first, name="base")
    repository = f"{REGISTRY}/{project.slug}/base"
    recorded = BaseLayerRecord.objects.get(project=project, cache_key=base.cache_key)
    assert f"{repository}@{recorded.digest}" == base.reference

    # Anyone with a login to the registry pushes another image under the base's cache tag,
    # and this worker loses its own copy (as another worker would not have it).
    planted_context = tmp_path / "planted"
    planted_context.mkdir()
    shutil.copy(BUSYBOX, planted_context / "busybox")
    (planted_context / "Dockerfile").write_text(PLANTED_DOCKERFILE)
    planted, _ = docker_client.images.build(path=str(planted_context), rm=True)
    planted.tag(repository, base.cache_key)
    docker_client.images.push(repository, base.cache_key, auth_config=_login())
    planted_digest = registry_digest(f"{project.slug}/base", base.cache_key)
    assert planted_digest != recorded.digest
    docker_client.images.remove(base.reference)

    repo.write("app/version.txt", "2\n")
    second = pushed_run(project, repo.commit("app change only"))

    assert second.status == RunStatus.SUCCEEDED, second.failure_reason
    layer = LayerBuild.objects.get(run=second, name="base")
    assert layer.source == CacheSource.BUILT
    assert "not trusted, building" in stage_log_text(second.stages.get(name="build"))
    assert file_in_image(docker_client, second.image_reference, "/planted.txt") == "absent\n"
    # Pushed again: the tag is Dockyard's once more, and so is the record.
    rebuilt = registry_digest(f"{project.slug}/base", base.cache_key)
    assert rebuilt != planted_digest
    recorded.refresh_from_db()
    assert recorded.digest == rebuilt


def test_two_branches_that_sanitise_to_one_tag_cannot_overwrite_each_other(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    repo.write("app/version.txt", "login\n")
    first = pushed_run(project, repo.commit("login work"), ref="refs/heads/feature/login")
    assert first.status == RunStatus.SUCCEEDED, first.failure_reason
    assert "feature-login" in first.published_tags

    repo.write("app/version.txt", "other\n")
    second = pushed_run(project, repo.commit("other work"), ref="refs/heads/feature-login")

    assert second.status == RunStatus.FAILED
    assert second.failed_stage == "publish"
    assert second.failure_reason == (
        f"publish.tags: {REGISTRY}/{project.slug}:feature-login is the tag of "
        "refs/heads/feature/login; refs/heads/feature-login would overwrite it (both names "
        "become 'feature-login' as a tag). Rename the branch or tag, or publish without "
        "{branch}/{tag} templates"
    )
    assert registry_digest(project.slug, "feature-login") == first.image_digest


def _login() -> dict[str, str] | None:
    login = registry_login()
    return None if login is None else {"username": login[0], "password": login[1]}


def test_a_candidate_is_linked_ahead_only_into_a_repository_its_project_may_publish_to(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    # The test stage links the candidate's blobs into its publish repository before the
    # verdict; a grant taken back since the config stage read dockyard.yml stops that too.
    project = make_project(repository_url="https://forge.invalid/acme/app.git")
    candidate_repository = f"{REGISTRY}/{project.slug}/candidates/app"
    context = busybox_app_repo(tmp_path / "context")
    docker_client.images.build(path=str(context.path), tag=f"{candidate_repository}:run-1")
    login = registry_login()
    auth = {"username": login[0], "password": login[1]} if login else None
    docker_client.images.push(candidate_repository, tag="run-1", auth_config=auth)
    digest = registry_digest(f"{project.slug}/candidates/app", "run-1")
    assert digest is not None
    config_blob = requests.get(
        f"http://{REGISTRY}/v2/{project.slug}/candidates/app/manifests/{digest}",
        headers={"Accept": MANIFEST_TYPES},
        auth=login,
        timeout=10,
    ).json()["config"]["digest"]

    def linked_into(repository: str) -> bool:
        response = requests.head(
            f"http://{REGISTRY}/v2/{repository}/blobs/{config_blob}", auth=login, timeout=10
        )
        return response.status_code == 200

    for repository, allowed in ((f"victim-{project.slug}", False), (project.slug, True)):
        publish_blobs_prepare(
            project=project,
            publish=PublishSpec(image="app", repository=f"{REGISTRY}/{repository}", tags=()),
            candidate=f"{candidate_repository}@{digest}",
        )
        assert linked_into(repository) is allowed, repository
