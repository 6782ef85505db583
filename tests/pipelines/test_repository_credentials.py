"""A private repository: its credentials are kept apart from its URL, reach git and nothing
else (not the mirror's config, not the log, not a page)."""

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.models import PipelineRun
from pipelines.selectors import stage_log_text
from pipelines.services import mirror_dir
from pipelines.states import RunStatus
from projects.models import Project
from tests.factories import busybox_app_repo, make_project
from tests.git_http_server import git_http_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

TOKEN = "ghp-0123456789-not-for-logs"


@pytest.fixture
def private_repository(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(the repository's URL, its head commit), served over HTTP behind a login."""
    work = busybox_app_repo(tmp_path / "work")
    sha = work.commit("private code")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(work.path), str(served / "app.git")],
        check=True,
    )
    with git_http_server(served, username="deploy", password=TOKEN) as base:
        yield f"{base}/app.git", sha


def test_a_private_repository_is_cloned_with_credentials_kept_out_of_url_log_and_mirror(
    private_repository: tuple[str, str],
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
) -> None:
    url, sha = private_repository
    with_credentials = url.replace("http://", f"http://deploy:{TOKEN}@")
    project = make_project(repository_url=with_credentials)
    assert project.repository_url == url

    run = pushed_run(project, sha)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    log = "".join(stage_log_text(stage) for stage in run.stages.all())
    assert f"fetching {url}" in log
    assert TOKEN not in log
    config = (mirror_dir(project) / "config").read_text()
    assert url in config and TOKEN not in config


def test_without_its_credentials_the_checkout_fails_saying_why(
    private_repository: tuple[str, str],
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
) -> None:
    url, sha = private_repository
    project = make_project(repository_url=url)
    Project.objects.filter(pk=project.pk).update(repository_credentials="")

    run = pushed_run(project, sha)

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "checkout"
    assert "Authentication failed" in run.failure_reason or "401" in run.failure_reason, (
        run.failure_reason
    )
