"""Publishing: the image is pushed under its commit sha, its branch and its git tag."""

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from pipelines.models import PipelineRun
from pipelines.states import RunStatus
from projects.services import project_permissions_update
from tests.conftest import registry_login
from tests.factories import busybox_app_repo, make_project

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def registry_digest(registry_url: str, name: str, tag: str) -> str:
    response = requests.head(
        f"{registry_url}/v2/{name}/manifests/{tag}",
        headers={"Accept": MANIFEST_V2},
        auth=registry_login(),
        timeout=10,
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def test_a_branch_push_is_tagged_with_the_sha_and_the_sanitised_branch(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
    registry_url: str,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    sha = repo.commit("feature work")

    run = pushed_run(project, sha, ref="refs/heads/feature/Login_v2")

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert run.published_tags == [sha, "feature-Login_v2"]
    assert set(registry_tags(project.slug)) == {sha, "feature-Login_v2"}
    for tag in run.published_tags:
        assert registry_digest(registry_url, project.slug, tag) == run.image_digest
    assert run.image_reference == f"{run.image_repository}:{sha}"


def test_a_tag_push_is_tagged_with_the_git_tag(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    sha = repo.commit("release")

    run = pushed_run(project, sha, ref="refs/tags/v1.2.0")

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert set(registry_tags(project.slug)) == {sha, "v1.2.0"}


def test_tag_templates_from_dockyard_yml_and_a_repository_an_operator_granted(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    repository = f"127.0.0.1:5000/acme/{project.slug}-web"
    project_permissions_update(project=project, publish_repositories=[repository])
    repo.write(
        "dockyard.yml",
        f"images:\n  app: {{}}\npublish:\n  repository: {repository}\n"
        f'  tags: ["{{short_sha}}", "run-{{run}}", "{{tag}}"]\n',
    )
    sha = repo.commit("templated")

    run = pushed_run(project, sha)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert run.published_tags == [sha[:12], "run-1"]
    assert set(registry_tags(f"acme/{project.slug}-web")) == {sha[:12], "run-1"}
    assert registry_tags(project.slug) == []


def test_an_invalid_dockyard_yml_fails_the_run_at_config_with_file_line_and_key(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    repo.write("dockyard.yml", "images:\n  base: {}\n  app:\n    from: bse\n")
    project = make_project(repository_url=repo.url)

    run = pushed_run(project, repo.commit("typo"))

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "config"
    assert run.failure_reason == "dockyard.yml:4: images.app.from: unknown image 'bse'"
    assert {s.name: s.status for s in run.stages.all()}["build"] == "skipped"
