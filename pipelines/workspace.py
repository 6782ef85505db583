"""A run's working copy on the worker's disk: the commit's files, exported from the mirror."""

import shutil
from pathlib import Path

from django.conf import settings

from infrastructure.git_checkout import GitCheckoutError, export_commit, mirror_fetch
from infrastructure.repository_urls import shown
from pipelines.execution import StageFailure
from pipelines.models import PipelineRun
from pipelines.services import mirror_dir, run_record_commit
from pipelines.stage_log import StageLog

_COMPLETE_MARKER = "complete"


def workspace_source_dir(run: PipelineRun) -> Path:
    return _workspace_dir(run) / "src"


def workspace_ensure(run: PipelineRun, log: StageLog) -> Path:
    """The run's source folder, checked out again if this worker does not have it (yet)."""
    workspace = _workspace_dir(run)
    source = workspace_source_dir(run)
    marker = workspace / _COMPLETE_MARKER
    # The marker names the run it was made for: a folder left by another run of the same id
    # (a database restored or recreated, a worker killed before its clean-up) is not reused.
    identity = f"{run.commit_sha} {run.created_at.isoformat()}\n"
    if marker.exists() and marker.read_text() == identity:
        return source
    shutil.rmtree(source, ignore_errors=True)
    mirror = mirror_dir(run.project)
    log.line(f"fetching {shown(run.project.repository_url)}")
    try:
        mirror_fetch(
            url=run.project.repository_url,
            mirror_dir=mirror,
            commit_sha=run.commit_sha,
            credentials=run.project.repository_credentials,
        )
        commit = export_commit(mirror_dir=mirror, commit_sha=run.commit_sha, destination=source)
    except GitCheckoutError as error:
        raise StageFailure(str(error)) from None
    marker.write_text(identity)
    run_record_commit(run=run, author=commit.author, message=commit.message)
    subject = commit.message.strip().splitlines()[0] if commit.message.strip() else ""
    log.line(f"checked out {commit.sha[:12]} {subject} ({commit.author})")
    return source


def workspace_remove(run_id: int) -> None:
    shutil.rmtree(settings.DOCKYARD_WORKSPACES_DIR / f"run-{run_id}", ignore_errors=True)


def _workspace_dir(run: PipelineRun) -> Path:
    return settings.DOCKYARD_WORKSPACES_DIR / f"run-{run.pk}"
