"""Writes for projects and runs. Status changes go through do_run_transition/do_stage_transition."""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from infrastructure import dispatch
from infrastructure.durable_jobs import job_enqueue
from infrastructure.git_checkout import GitCheckoutError, ref_head
from pipelines.live_updates import run_status_publish
from pipelines.models import PipelineRun, RunEvent, RunKind, Stage, Trigger
from pipelines.states import (
    RUN_FINAL_STATES,
    STAGE_FINAL_STATES,
    STAGE_ORDER,
    RunStatus,
    StageName,
    StageStatus,
    check_run_transition,
    check_stage_transition,
)
from projects.models import Project
from projects.ref_names import ref_name_problem
from projects.services import ProjectError

logger = logging.getLogger(__name__)

_COMMIT_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def run_create(
    *,
    project: Project,
    ref: str,
    commit_sha: str,
    commit_message: str = "",
    commit_author: str = "",
    trigger: str,
    triggered_by: PipelineRun | None = None,
    kind: str = RunKind.BRANCH,
    pull_request: int | None = None,
    target_branch: str = "",
) -> PipelineRun:
    """Queue a run of `commit_sha`; its first stage is enqueued once the transaction commits."""
    if not _COMMIT_SHA.match(commit_sha):
        raise ValueError(f"commit {commit_sha!r} is not a full hexadecimal commit id")
    if (problem := ref_name_problem(ref)) is not None:
        raise ValueError(f"ref {ref!r} {problem}")
    if trigger not in Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}")
    # No savepoint when called inside a transaction (a webhook acting, a rebuild): a failure
    # here fails the caller's transaction too, which is what each caller wants, and the
    # SAVEPOINT and RELEASE are two round trips on every run-starting delivery.
    with transaction.atomic(savepoint=False):
        # The project row lock serialises run numbering per project. FOR NO KEY UPDATE, not
        # FOR UPDATE: other transactions that insert rows pointing at the project (deliveries,
        # runs) check that key at commit and must not wait on, or deadlock with, this one.
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)
        last = project.runs.aggregate(last=Max("number"))["last"] or 0
        run = PipelineRun.objects.create(
            project=project,
            number=last + 1,
            ref=ref,
            commit_sha=commit_sha,
            commit_message=commit_message[:10_000],
            commit_author=commit_author[:500],
            trigger=trigger,
            triggered_by=triggered_by,
            kind=kind,
            pull_request=pull_request,
            target_branch=target_branch,
        )
        _run_event_record_and_report(
            run, from_status="", to_status=RunStatus.QUEUED, reason=trigger
        )
        stages = Stage.objects.bulk_create(
            Stage(run=run, name=name, position=position)
            for position, name in enumerate(STAGE_ORDER)
        )
        if kind == RunKind.PULL_REQUEST:
            stage_skip(run=run, name=StageName.PUBLISH, reason="pull request runs publish nothing")
        checkout = next(stage for stage in stages if stage.name == StageName.CHECKOUT)
        stage_enqueue(run, StageName.CHECKOUT, stage=checkout)
    return run


def run_trigger(
    *, project: Project, ref: str, commit_sha: str = "", triggered_by: PipelineRun | None = None
) -> PipelineRun:
    """Queue a run of a branch or tag by hand (API, chat-ops): its head commit unless named.

    `ref` may be short ("main", "v1.2") or full ("refs/heads/main", "refs/tags/v1.2").
    """
    full_ref = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    if not full_ref.startswith(("refs/heads/", "refs/tags/")):
        raise ProjectError(f"ref {ref!r}: name a branch or a tag")
    if (problem := ref_name_problem(full_ref)) is not None:
        raise ProjectError(f"ref {ref!r}: {problem}")
    if not commit_sha:
        try:
            commit_sha = ref_head(
                url=project.repository_url,
                mirror_dir=mirror_dir(project),
                ref=full_ref,
                credentials=project.repository_credentials,
            )
        except GitCheckoutError as error:
            if not full_ref.startswith("refs/heads/") or ref.startswith("refs/"):
                raise ProjectError(f"ref {ref!r}: {error}") from None
            # A short name may be a tag rather than a branch.
            full_ref = f"refs/tags/{ref}"
            try:
                commit_sha = ref_head(
                    url=project.repository_url,
                    mirror_dir=mirror_dir(project),
                    ref=full_ref,
                    credentials=project.repository_credentials,
                )
            except GitCheckoutError:
                raise ProjectError(
                    f"ref {ref!r}: {project.slug} has no such branch or tag"
                ) from None
    elif not _COMMIT_SHA.match(commit_sha):
        raise ProjectError(f"commit {commit_sha!r} is not a full hexadecimal commit id")
    return run_create(
        project=project,
        ref=full_ref,
        commit_sha=commit_sha,
        trigger=Trigger.MANUAL,
        kind=RunKind.TAG if full_ref.startswith("refs/tags/") else RunKind.BRANCH,
        triggered_by=triggered_by,
    )


def run_retry(*, run: PipelineRun) -> PipelineRun:
    """Run the same commit of the same ref again, as a new run."""
    return run_create(
        project=run.project,
        ref=run.ref,
        commit_sha=run.commit_sha,
        commit_message=run.commit_message,
        commit_author=run.commit_author,
        trigger=Trigger.MANUAL,
        kind=run.kind,
        pull_request=run.pull_request,
        target_branch=run.target_branch,
        triggered_by=run,
    )


def run_cancel(*, run: PipelineRun, reason: str) -> bool:
    """Cancel a queued or running run; False when it had already ended.

    The stage that is running notices within a second or two (StageLog.stream asks) and stops
    its container; stages not yet started never start.
    """
    # No savepoint inside a caller's transaction (a webhook superseding runs): see run_create.
    with transaction.atomic(savepoint=False):
        locked = (
            PipelineRun.objects.select_related("project")
            .select_for_update(of=("self",))
            .get(pk=run.pk)
        )
        if locked.status in RUN_FINAL_STATES:
            return False
        unfinished = locked.stages.select_for_update().exclude(status__in=STAGE_FINAL_STATES)
        do_stages_transition(
            stages=list(unfinished.order_by("position")), to=StageStatus.CANCELLED, reason=reason
        )
        _locked_run_move(locked, to=RunStatus.CANCELLED, reason=reason)
    run.status, run.finished_at = locked.status, locked.finished_at
    return True


def do_run_transition(*, run: PipelineRun, to: str, reason: str = "") -> PipelineRun:
    """Move a run to `to` under a row lock, refusing illegal moves, and announce the move.

    Records it as a RunEvent and, once the transaction commits: its page hears of it, the
    forge is told (when the project reports commit statuses), and when the run ends its
    clean-up and its chat notifications are queued.
    """
    with transaction.atomic():
        # Only the run's row is locked: run_create holds the project's row while numbering.
        locked = (
            PipelineRun.objects.select_related("project")
            .select_for_update(of=("self",))
            .get(pk=run.pk)
        )
        _locked_run_move(locked, to=to, reason=reason)
    run.status, run.started_at, run.finished_at = (
        locked.status,
        locked.started_at,
        locked.finished_at,
    )
    return run


def _locked_run_move(locked: PipelineRun, *, to: str, reason: str) -> None:
    """do_run_transition's work, for a caller that holds the run's row lock (with its project
    loaded) in the transaction it is in."""
    check_run_transition(locked.status, to)
    now = timezone.now()
    update_fields = ["status"]
    if to == RunStatus.RUNNING and locked.started_at is None:
        locked.started_at = now
        update_fields.append("started_at")
    if to in RUN_FINAL_STATES:
        locked.finished_at = now
        update_fields.append("finished_at")
    _run_event_record_and_report(locked, from_status=locked.status, to_status=to, reason=reason)
    locked.status = to
    locked.save(update_fields=update_fields)
    _publish_status_on_commit(locked.pk)
    if to in RUN_FINAL_STATES and locked.started_at is not None:
        # A run that never started left nothing on any worker to clean up.
        dispatch.queue_run_cleanup(run_id=locked.pk)
    never_started_cancel = to == RunStatus.CANCELLED and locked.started_at is None
    if to in RUN_FINAL_STATES and not never_started_cancel:
        # A run cancelled before it started (superseded by a newer push) is not news.
        dispatch.queue_run_notifications(run_id=locked.pk)


def do_stage_transition(*, stage: Stage, to: str, reason: str = "", task_id: str = "") -> Stage:
    """Move a stage to `to` under a row lock, refusing illegal moves; the move is recorded and
    the run's page hears of it once the transaction commits."""
    with transaction.atomic():
        locked = Stage.objects.select_for_update().get(pk=stage.pk)
        do_stages_transition(stages=[locked], to=to, reason=reason, task_id=task_id)
    stage.status, stage.started_at, stage.finished_at, stage.task_id = (
        locked.status,
        locked.started_at,
        locked.finished_at,
        locked.task_id,
    )
    return stage


def do_stages_transition(
    *, stages: list[Stage], to: str, reason: str = "", task_id: str = ""
) -> None:
    """Move several stages to `to` at once, refusing illegal moves; each move is recorded.

    Call inside a transaction holding the stages' row locks (select_for_update).
    """
    for stage in stages:
        check_stage_transition(stage.status, to)
    if not stages:
        return
    now = timezone.now()
    changes: dict[str, object] = {"status": to}
    if to == StageStatus.RUNNING:
        changes.update(started_at=now, finished_at=None, task_id=task_id)
    elif to in STAGE_FINAL_STATES:
        changes["finished_at"] = now
    RunEvent.objects.bulk_create(
        RunEvent(
            run_id=stage.run_id,
            stage=stage,
            from_status=stage.status,
            to_status=to,
            reason=reason[:10_000],
        )
        for stage in stages
    )
    Stage.objects.filter(pk__in=[stage.pk for stage in stages]).update(**changes)
    _publish_status_on_commit(stages[0].run_id)
    for stage in stages:
        for field, value in changes.items():
            setattr(stage, field, value)


def run_record_image(
    *,
    run: PipelineRun,
    image_id: str = "",
    image_repository: str = "",
    image_digest: str = "",
    published_tags: list[str] | None = None,
) -> None:
    """Store what the build and publish stages produced (not a status: no transition)."""
    fields: dict[str, object] = {}
    if image_id:
        fields["image_id"] = image_id
    if image_repository:
        fields["image_repository"] = image_repository
    if image_digest:
        fields["image_digest"] = image_digest
    if published_tags:
        fields["published_tags"] = published_tags
        fields["image_reference"] = (
            f"{image_repository or run.image_repository}:{published_tags[0]}"
        )
    PipelineRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


def run_record_commit(*, run: PipelineRun, author: str, message: str) -> None:
    """Fill the run's commit author and message from the checkout, where the push left them
    empty (a run started by hand, a rebuild, a forge that did not say)."""
    fields: dict[str, str] = {}
    if not run.commit_author and author:
        fields["commit_author"] = author[:500]
    if not run.commit_message and message:
        fields["commit_message"] = message[:10_000]
    if fields:
        PipelineRun.objects.filter(pk=run.pk).update(**fields)
        for name, value in fields.items():
            setattr(run, name, value)


def run_record_spec(*, run: PipelineRun, spec: dict[str, object]) -> None:
    """Store the dockyard.yml the config stage validated, for the stages after it."""
    PipelineRun.objects.filter(pk=run.pk).update(spec=spec)
    run.spec = spec


def stage_skip(*, run: PipelineRun, name: str, reason: str) -> None:
    """Skip a stage that has not started, e.g. the test stage of a stack without tests."""
    do_stage_transition(stage=run.stages.get(name=name), to=StageStatus.SKIPPED, reason=reason)


def dependents_rebuild(*, base_run_id: int) -> list[PipelineRun]:
    """After a base project published from its default branch, rebuild the projects on it.

    Each dependent's default branch is rebuilt at its current head. Safe to repeat: a
    dependent already rebuilt for this base run is not rebuilt again.
    """
    base_run = PipelineRun.objects.select_related("project").get(pk=base_run_id)
    base = base_run.project
    if base_run.ref != f"refs/heads/{base.default_branch}" or not base_run.image_digest:
        return []
    dependents = Project.objects.filter(base_links__base_project=base).distinct()
    runs: list[PipelineRun] = []
    for project in dependents:
        if project.runs.filter(triggered_by=base_run).exists():
            continue
        run = default_branch_rebuild(
            project=project,
            why=f"rebuild on {base.slug} #{base_run.number}",
            trigger=Trigger.BASE_UPDATED,
            triggered_by=base_run,
        )
        if run is not None:
            runs.append(run)
    return runs


def default_branch_rebuild(
    *, project: Project, why: str, trigger: str, triggered_by: PipelineRun | None = None
) -> PipelineRun | None:
    """Queue a run of the project's default branch at its current head, `why` as its message;
    None (logged) when the head cannot be found (the repository unreachable)."""
    try:
        head = ref_head(
            url=project.repository_url,
            mirror_dir=mirror_dir(project),
            ref=f"refs/heads/{project.default_branch}",
            credentials=project.repository_credentials,
        )
    except GitCheckoutError:
        logger.exception("cannot find the head of %s to rebuild it (%s)", project, why)
        return None
    return run_create(
        project=project,
        ref=f"refs/heads/{project.default_branch}",
        commit_sha=head,
        commit_message=why,
        trigger=trigger,
        triggered_by=triggered_by,
    )


def mirror_dir(project: Project) -> Path:
    """Where this worker keeps the project's git mirror."""
    return settings.DOCKYARD_MIRRORS_DIR / f"{project.slug}.git"


@dataclass(frozen=True)
class HandedOver:
    """The next stage of a run, enqueued for the worker that just settled the stage before it
    to carry at once, without a round trip through the broker."""

    stage_name: str
    task_id: str


def run_advance(*, run: PipelineRun, carry_on: bool = False) -> HandedOver | None:
    """Enqueue the next pending stage, or settle the run when none is left.

    `carry_on`: the caller carries the next stage itself (returned) instead of sending it to
    the broker. Call inside a transaction holding the run's row lock.
    """
    stages = list(run.stages.order_by("position"))
    if any(stage.status == StageStatus.RUNNING for stage in stages):
        return None
    failed = next((stage for stage in stages if stage.status == StageStatus.FAILED), None)
    if failed is not None:
        return None
    pending = next((stage for stage in stages if stage.status == StageStatus.PENDING), None)
    if pending is not None:
        task_id = stage_enqueue(run, pending.name, send=not carry_on, stage=pending)
        return HandedOver(stage_name=pending.name, task_id=task_id) if carry_on else None
    if run.status not in RUN_FINAL_STATES:
        do_run_transition(run=run, to=RunStatus.SUCCEEDED)
        run_id = run.pk
        dispatch.queue_dependents_rebuild(run_id=run_id)
        if run.deployable:
            dispatch.queue_release_from_run(run_id=run_id)
    return None


def run_fail(*, run: PipelineRun, stage: Stage, reason: str) -> None:
    """Fail `stage` and its run; the stages after it are skipped.

    Call inside a transaction holding the run's row lock.
    """
    do_stage_transition(stage=stage, to=StageStatus.FAILED, reason=reason)
    later = run.stages.select_for_update().filter(
        position__gt=stage.position, status=StageStatus.PENDING
    )
    do_stages_transition(
        stages=list(later.order_by("position")),
        to=StageStatus.SKIPPED,
        reason=f"{stage.name} failed",
    )
    PipelineRun.objects.filter(pk=run.pk).update(
        failed_stage=stage.name, failure_reason=reason[:10_000]
    )
    run.failed_stage, run.failure_reason = stage.name, reason
    if run.status not in RUN_FINAL_STATES:
        do_run_transition(run=run, to=RunStatus.FAILED, reason=f"{stage.name}: {reason}")


def runs_supersede(*, run: PipelineRun) -> list[PipelineRun]:
    """Cancel the unfinished runs of the same ref queued before `run`; returns them."""
    older = PipelineRun.objects.filter(
        project=run.project, ref=run.ref, number__lt=run.number
    ).exclude(status__in=RUN_FINAL_STATES)
    cancelled = []
    for stale in older.order_by("number"):
        if run_cancel(run=stale, reason=f"superseded by #{run.number}"):
            cancelled.append(stale)
    return cancelled


@dataclass(frozen=True)
class _RunStatusPublish:
    run_id: int

    def __call__(self) -> None:
        run_status_publish(self.run_id)


def _publish_status_on_commit(run_id: int) -> None:
    """Once the transaction commits, the run's page hears its status, read fresh then: once
    per run, however many of its moves the transaction made (a cancel moves its stages, then
    the run; a webhook that supersedes a run pays for each publish's reads)."""
    publish = _RunStatusPublish(run_id)
    connection = transaction.get_connection()
    # What a rolled-back savepoint had asked for is no longer in run_on_commit.
    if connection.in_atomic_block and any(
        func == publish for _, func, _ in connection.run_on_commit
    ):
        return
    transaction.on_commit(publish)


def _run_event_record_and_report(
    run: PipelineRun, *, from_status: str, to_status: str, reason: str
) -> None:
    """Record a run-level move, and queue its commit status when the project reports them."""
    event = RunEvent.objects.create(
        run=run, from_status=from_status, to_status=to_status, reason=reason[:10_000]
    )
    if run.project.forge_token:
        commit_status_enqueue(run_id=run.pk, event_id=event.pk)


def commit_status_task_id(*, run_id: int, event_id: int) -> str:
    """The one task id of the report of a run's event: the reaper asks the broker for it."""
    return f"commit-status-{run_id}-{event_id}"


def commit_status_enqueue(*, run_id: int, event_id: int) -> None:
    """Send the report of the run's state as of `event_id` once the transaction commits."""
    task_id = commit_status_task_id(run_id=run_id, event_id=event_id)
    dispatch.queue_commit_status_report(run_id=run_id, event_id=event_id, task_id=task_id)


def stage_enqueue(
    run: PipelineRun, stage_name: str, *, send: bool = True, stage: Stage | None = None
) -> str:
    """Send the stage's task once the transaction commits, noting its id and when it went;
    returns the id. `stage`: the stage's row when the caller has it (not read again).

    The id lets the reaper ask the broker whether the message is still there (a Redis
    restart loses it) and tell a stale delivery from the one that owns the stage. `send`
    False: the caller carries the stage under that id itself; should it die before claiming
    it, the reaper finds no message for the id and sends one.
    """
    run_id = run.pk

    def queue(task_id: str) -> None:
        if send:
            dispatch.queue_stage(stage_name=stage_name, run_id=run_id, task_id=task_id)

    return job_enqueue(stage or Stage.objects.get(run_id=run_id, name=stage_name), send=queue)
