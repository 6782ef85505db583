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
from pipelines.states import RUN_FINAL_STATES

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


def workspaces_of_finished_runs_remove(*, dry_run: bool = False) -> list[int]:
    """Remove this host's workspaces of runs that are over (or gone); their run ids.

    A run's clean-up task removes its workspace on the host that takes the task; the stages
    before it may have run on other hosts, each of which sweeps its own disk with this.
    """
    folders: dict[int, Path] = {}
    if settings.DOCKYARD_WORKSPACES_DIR.is_dir():
        for folder in settings.DOCKYARD_WORKSPACES_DIR.iterdir():
            number = folder.name.removeprefix("run-")
            if folder.is_dir() and folder.name.startswith("run-") and number.isdigit():
                folders[int(number)] = folder
    if not folders:
        return []
    unfinished = set(
        PipelineRun.objects.filter(pk__in=folders)
        .exclude(status__in=RUN_FINAL_STATES)
        .values_list("pk", flat=True)
    )
    over = sorted(set(folders) - unfinished)
    if not dry_run:
        for run_id in over:
            shutil.rmtree(folders[run_id], ignore_errors=True)
    return over


def _workspace_dir(run: PipelineRun) -> Path:
    return settings.DOCKYARD_WORKSPACES_DIR / f"run-{run.pk}"
