"""A run's working copy: exported once, reused by its later stages, never another run's."""

from pathlib import Path
from typing import Any

import pytest

from pipelines.models import PipelineRun
from pipelines.services import run_create
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure
from tests.factories import GitRepo, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def workspaces(settings: Any, tmp_path: Path) -> None:
    settings.DOCKYARD_WORKSPACES_DIR = tmp_path / "workspaces"


def run_of(repo: GitRepo, sha: str) -> PipelineRun:
    project = make_project(repository_url=repo.url)
    return run_create(project=project, ref="refs/heads/main", commit_sha=sha, trigger="manual")


def ensure(run: PipelineRun) -> Path:
    log = StageLog(run.stages.get(name="checkout"))
    try:
        return workspace_ensure(run, log)
    finally:
        log.close()


def test_a_later_stage_reuses_the_working_copy_its_checkout_made(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("version.txt", "one\n")
    run = run_of(repo, repo.commit("one"))
    source = ensure(run)
    (source / "made-by-the-build.txt").write_text("kept\n")

    assert ensure(run) == source
    assert (source / "made-by-the-build.txt").exists()


def test_a_working_copy_left_by_another_run_with_the_same_id_is_not_reused(
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("version.txt", "one\n")
    first = run_of(repo, repo.commit("one"))
    ensure(first)
    repo.write("version.txt", "two\n")
    second_sha = repo.commit("two")
    # As after the database was recreated: a new run gets the id the old folder is named by.
    PipelineRun.objects.filter(pk=first.pk).update(commit_sha=second_sha)
    first.refresh_from_db()

    source = ensure(first)

    assert (source / "version.txt").read_text() == "two\n"
