"""A project built on another project's published base is rebuilt when that base changes."""

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from builds.models import LayerBuild
from pipelines.models import PipelineRun, Trigger
from pipelines.states import RUN_FINAL_STATES, RunStatus
from projects.models import BaseDependency
from tests.factories import APP_DOCKERFILE, BASE_DOCKERFILE, GitRepo, make_project, stack_repo

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

BASE_PROJECT_SPEC = """\
images:
  base:
    dockerfile: Dockerfile
"""
APP_SPEC = """\
images:
  app:
    dockerfile: Dockerfile
    from: project:{base}
test:
  command: ["sh", "/app/test.sh"]
"""


def base_repo(path: Path) -> GitRepo:
    repo = stack_repo(path, spec=BASE_PROJECT_SPEC)
    (path / "docker" / "busybox").rename(path / "busybox")
    repo.write("Dockerfile", BASE_DOCKERFILE)
    repo.write(".dockerignore", "")
    return repo


def wait_for_dependent_run(
    project_slug: str, base_run: PipelineRun, timeout: float = 180
) -> PipelineRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = PipelineRun.objects.filter(project__slug=project_slug, triggered_by=base_run).first()
        if run is not None and run.status in RUN_FINAL_STATES:
            return run
        time.sleep(0.2)
    raise AssertionError(f"{project_slug} was not rebuilt on {base_run}")


def test_a_new_base_fans_out_to_its_dependents_which_rebuild_and_retest(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    client: Client,
) -> None:
    base_git = base_repo(tmp_path / "acme-base")
    base_project = make_project(repository_url=base_git.url)
    first_base = pushed_run(base_project, base_git.commit("base 1"))
    assert first_base.status == RunStatus.SUCCEEDED, first_base.failure_reason

    app_git = stack_repo(tmp_path / "web", spec=APP_SPEC.format(base=base_project.slug))
    app_git.write("Dockerfile", APP_DOCKERFILE)
    web = make_project(repository_url=app_git.url)
    first_web = pushed_run(web, app_git.commit("web 1"))
    assert first_web.status == RunStatus.SUCCEEDED, first_web.failure_reason
    assert BaseDependency.objects.filter(project=web, base_project=base_project).exists()
    assert LayerBuild.objects.get(run=first_web).parent == f"project:{base_project.slug}"

    base_git.write("Dockerfile", BASE_DOCKERFILE + "ENV OPENSSL=3.0.99\n")
    second_base = pushed_run(base_project, base_git.commit("new OpenSSL"))
    assert second_base.image_digest != first_base.image_digest

    rebuilt = wait_for_dependent_run(web.slug, second_base)
    assert rebuilt.status == RunStatus.SUCCEEDED, rebuilt.failure_reason
    assert rebuilt.trigger == Trigger.BASE_UPDATED
    assert rebuilt.commit_sha == first_web.commit_sha
    assert rebuilt.stages.get(name="test").status == "succeeded"
    build_log = "".join(rebuilt.log_chunks.values_list("text", flat=True))
    assert f"building FROM {second_base.image_repository}@{second_base.image_digest}" in build_log

    client.force_login(User.objects.create_user("ops"))
    page = client.get(f"/projects/{base_project.slug}/").content.decode()
    assert "used by" in page and web.slug in page and "succeeded" in page


def test_a_project_whose_base_has_never_published_fails_saying_so(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    base_project = make_project()
    app_git = stack_repo(tmp_path / "web", spec=APP_SPEC.format(base=base_project.slug))
    web = make_project(repository_url=app_git.url)
    run = pushed_run(web, app_git.commit("too early"))
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "build"
    assert f"project {base_project.slug!r} has not published an image" in run.failure_reason


def test_building_on_an_unknown_project_fails_at_config(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    app_git = stack_repo(tmp_path / "web", spec=APP_SPEC.format(base="no-such-base"))
    web = make_project(repository_url=app_git.url)
    run = pushed_run(web, app_git.commit("typo"))
    assert run.status == RunStatus.FAILED
    assert run.failure_reason == "dockyard.yml: images.app.from: no project 'no-such-base'"
