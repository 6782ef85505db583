"""A signed push goes through checkout, build, test and publish: real engine, real registry."""

from collections.abc import Callable
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings
from django.test import Client

from builds.models import LayerBuild
from infrastructure import dispatch
from infrastructure.docker_engine import DockerEngine
from pipelines.execution import StageTools, stages_execute
from pipelines.models import PipelineRun, Stage, TestStep
from pipelines.selectors import stage_log_text
from pipelines.services import run_create
from pipelines.states import RunStatus, StageStatus
from pipelines.tasks import STAGE_BODIES
from projects.models import Project
from tests.conftest import registry_login
from tests.factories import busybox_app_repo, github_headers, github_push_body, make_project

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def push(client: Client, project: Project, sha: str) -> PipelineRun:
    body = github_push_body(clone_url=project.repository_url, sha=sha)
    response = client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret=project.webhook_secret, body=body),
    )
    assert response.status_code == 202, response.content
    return PipelineRun.objects.get(project=project, commit_sha=sha)


def containers_of(docker_client: docker.DockerClient, run: PipelineRun) -> list[object]:
    return docker_client.containers.list(
        all=True, sparse=True, filters={"label": f"dockyard.run={run.pk}"}
    )


def stages_by_name(run: PipelineRun) -> dict[str, str]:
    return {stage.name: stage.status for stage in run.stages.all()}


def test_a_signed_push_publishes_an_image_tagged_with_the_commit_sha(
    tmp_path: Path,
    client: Client,
    celery_worker: str,
    wait_for_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
    registry_url: str,
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo", test_script="echo all 3 tests passed\n")
    sha = repo.commit("first version")
    project = make_project(repository_url=repo.url, test_command="sh /app/test.sh")

    run = wait_for_run(push(client, project, sha))

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert set(stages_by_name(run).values()) == {StageStatus.SUCCEEDED}
    assert sha in registry_tags(project.slug)
    manifest = requests.head(
        f"{registry_url}/v2/{project.slug}/manifests/{sha}",
        headers={"Accept": MANIFEST_V2},
        auth=registry_login(),
        timeout=10,
    )
    assert manifest.headers["Docker-Content-Digest"] == run.image_digest
    assert run.image_reference.endswith(f"/{project.slug}:{sha}")
    assert "all 3 tests passed" in stage_log_text(run.stages.get(name="test"))
    assert containers_of(docker_client, run) == []
    # The worker carried every stage itself, the candidate pushed beside the test: the step's
    # record names the candidate, whose digest is the one published.
    candidate = LayerBuild.objects.get(run=run, name="app").reference
    assert "/candidates/app@" in candidate and candidate.endswith(run.image_digest)
    assert TestStep.objects.get(run=run).image == candidate
    assert len({stage.worker for stage in run.stages.all()}) == 1


def test_a_failing_test_fails_the_run_at_the_test_stage_with_its_output(
    tmp_path: Path,
    client: Client,
    celery_worker: str,
    wait_for_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo", test_script="echo 'expected 2, got 3' >&2\nexit 3\n")
    sha = repo.commit("broken arithmetic")
    project = make_project(repository_url=repo.url, test_command="sh /app/test.sh")

    run = wait_for_run(push(client, project, sha))

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "test"
    assert "exited with status 3" in run.failure_reason
    test_log = stage_log_text(run.stages.get(name="test"))
    assert "expected 2, got 3" in test_log
    assert stages_by_name(run)["publish"] == StageStatus.SKIPPED
    assert registry_tags(project.slug) == []
    assert containers_of(docker_client, run) == []


def test_a_test_that_runs_too_long_is_killed_and_the_run_says_so(
    tmp_path: Path,
    client: Client,
    celery_worker: str,
    wait_for_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo", test_script="echo started\nsleep 300\n")
    sha = repo.commit("slow test")
    project = make_project(repository_url=repo.url, test_command="sh /app/test.sh", test_timeout=2)

    run = wait_for_run(push(client, project, sha), timeout=120)

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "test"
    assert "longer than 2s" in run.failure_reason
    assert "started" in stage_log_text(run.stages.get(name="test"))
    assert containers_of(docker_client, run) == []


def test_a_dockerfile_that_does_not_build_fails_the_run_at_the_build_stage(
    tmp_path: Path,
    client: Client,
    celery_worker: str,
    wait_for_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    repo.write("Dockerfile", repo.path.joinpath("Dockerfile").read_text() + "RUN exit 7\n")
    sha = repo.commit("break the build")
    project = make_project(repository_url=repo.url, test_command="sh /app/test.sh")

    run = wait_for_run(push(client, project, sha))

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "build"
    assert "returned a non-zero code: 7" in run.failure_reason
    assert "RUN exit 7" in stage_log_text(run.stages.get(name="build"))
    assert stages_by_name(run)["test"] == StageStatus.SKIPPED
    assert containers_of(docker_client, run) == []


def test_a_commit_missing_from_the_repository_fails_the_run_at_checkout(
    tmp_path: Path,
    client: Client,
    celery_worker: str,
    wait_for_run: Callable[..., PipelineRun],
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    repo.commit("exists")
    project = make_project(repository_url=repo.url)
    missing = "1" * 40

    run = wait_for_run(push(client, project, missing))

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "checkout"
    assert f"commit {missing} is not in" in run.failure_reason


def test_a_test_stage_restarted_without_the_unpushed_build_builds_it_again_and_tests_that(
    tmp_path: Path,
    docker_client: docker.DockerClient,
    registry_tags: Callable[[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No stage goes to a worker: each runs here, as this test says. Nor does what a run's end
    # sends (its release to staging, clean-up, notifications): the suite's worker would carry
    # it out while this test's tables are emptied after it, and deadlock with that.
    for name in (
        "queue_stage",
        "queue_run_cleanup",
        "queue_dependents_rebuild",
        "queue_release_from_run",
        "queue_run_notifications",
    ):
        monkeypatch.setattr(dispatch, name, lambda **_: None)
    repo = busybox_app_repo(tmp_path / "repo", test_script="echo tested\n")
    sha = repo.commit("first version")
    project = make_project(repository_url=repo.url, test_command="sh /app/test.sh")
    run = run_create(project=project, ref="refs/heads/main", commit_sha=sha, trigger="webhook")
    # The worker that built meant to carry on, and so left the push to its test stage...
    carrying = StageTools(engine=lambda: DockerEngine(settings.DOCKER_HOST), carries_on=True)

    def run_here(*names: str) -> None:
        for name in names:
            stages_execute(
                run_id=run.pk,
                stage_name=name,
                task_id=name,
                bodies=STAGE_BODIES,
                tools=carrying,
                carry_on=False,
            )

    run_here("checkout", "config", "build")
    built = LayerBuild.objects.get(run=run, name="app")
    assert built.reference == "" and built.image_id
    # ...and was lost: the test stage runs where that image is not.
    docker_client.images.remove(built.image_id, force=True)

    run_here("test", "publish")

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    rebuilt = LayerBuild.objects.get(run=run, name="app")
    assert rebuilt.image_id != built.image_id
    assert TestStep.objects.get(run=run).image == rebuilt.reference
    assert rebuilt.reference.endswith(run.image_digest)
    assert sha in registry_tags(project.slug)
    assert "building them again here" in stage_log_text(Stage.objects.get(run=run, name="test"))
