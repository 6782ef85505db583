"""Commit statuses reach the forge (a local server standing in for it), in order, retried."""

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.models import PipelineRun
from pipelines.services import run_create
from pipelines.states import RunStatus
from projects.models import Project
from tests.factories import busybox_app_repo, make_project
from tests.recording_server import RecordingServer, recording_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def wait_for_state(server: RecordingServer, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(call.body.get("state") == state for call in server.accepted()):
            return
        time.sleep(0.1)
    raise AssertionError(f"the forge never got {state!r}: {[c.body for c in server.calls]}")


def reporting_project(
    tmp_path: Path, server: RecordingServer, **fields: str
) -> tuple[Project, str]:
    repo = busybox_app_repo(tmp_path / "repo", test_script=fields.pop("script", "echo ok\n"))
    project = make_project(
        repository_url=repo.url,
        test_command="sh /app/test.sh",
    )
    Project.objects.filter(pk=project.pk).update(
        forge_api_url=server.url, forge_token="forge-token-123", **fields
    )
    project.refresh_from_db()
    return project, repo.commit("change")


def test_github_receives_pending_then_success_with_a_link_to_the_run(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
) -> None:
    with recording_server() as server:
        project, sha = reporting_project(tmp_path, server, forge_repository="acme/web")
        run = pushed_run(project, sha)
        assert run.status == RunStatus.SUCCEEDED
        wait_for_state(server, "success")

    states = [call.body["state"] for call in server.accepted()]
    assert states == ["pending", "pending", "success"]
    call = server.accepted()[-1]
    assert call.path == f"/repos/acme/web/statuses/{sha}"
    assert call.headers["authorization"] == "Bearer forge-token-123"
    assert call.body["context"] == "dockyard"
    assert call.body["target_url"].endswith(f"/runs/{run.pk}/")


def test_a_failing_run_is_reported_as_a_failure(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    with recording_server() as server:
        project, sha = reporting_project(
            tmp_path, server, forge_repository="acme/web", script="exit 1\n"
        )
        run = pushed_run(project, sha)
        assert run.status == RunStatus.FAILED
        wait_for_state(server, "failure")
    assert [c.body["state"] for c in server.accepted()][-1] == "failure"


def test_gitlab_receives_pending_running_success_by_project_path(
    tmp_path: Path, celery_worker: str, wait_for_run: Callable[..., PipelineRun]
) -> None:
    with recording_server() as server:
        project, sha = reporting_project(tmp_path, server, forge_repository="group/sub/app")
        Project.objects.filter(pk=project.pk).update(forge="gitlab")
        project.refresh_from_db()
        run = wait_for_run(
            run_create(project=project, ref="refs/heads/main", commit_sha=sha, trigger="manual")
        )
        assert run.status == RunStatus.SUCCEEDED
        wait_for_state(server, "success")

    accepted = server.accepted()
    assert [call.body["state"] for call in accepted] == ["pending", "running", "success"]
    assert accepted[0].path == f"/projects/group%2Fsub%2Fapp/statuses/{sha}"
    assert accepted[0].headers["private-token"] == "forge-token-123"
    assert accepted[0].body["name"] == "dockyard"
    assert accepted[0].body["ref"] == "main"


def test_a_forge_that_is_down_never_fails_the_run_and_gets_the_status_later(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    with recording_server(failures=3) as server:
        project, sha = reporting_project(tmp_path, server, forge_repository="acme/web")
        run = pushed_run(project, sha)
        assert run.status == RunStatus.SUCCEEDED
        wait_for_state(server, "success", timeout=120)

    assert sum(1 for call in server.calls if call.headers["x-recorded-status"] == "503") == 3
    accepted = [call.body["state"] for call in server.accepted()]
    # Retries never bring an older state back after a newer one.
    assert accepted[-1] == "success"
    assert "success" not in accepted[:-1]
