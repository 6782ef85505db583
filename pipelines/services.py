"""Writes for projects and runs. Status changes go through run_transition/stage_transition."""

import logging
import re
import secrets
import shlex
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import Actor
from audit.models import AuditAction
from audit.services import audit_record
from infrastructure import dispatch
from infrastructure.durable_jobs import job_enqueue
from infrastructure.git_checkout import GitCheckoutError, ref_head
from infrastructure.repository_urls import (
    RepositoryURLError,
    repository_key,
    split_credentials,
    validate_repository_url,
)
from pipelines.live_updates import run_status_publish
from pipelines.models import (
    BaseDependency,
    Forge,
    PipelineRun,
    Project,
    ProjectSecret,
    RunEvent,
    RunKind,
    Stage,
    Trigger,
)
from pipelines.ref_names import ref_name_problem
from pipelines.spec import SpecPolicy, publish_repository_refusal, repository_name_problem
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
from pipelines.trigger_rules import parse_globs

logger = logging.getLogger(__name__)

# A project's slug becomes a registry repository name, so it follows those rules too.
_SLUG = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_COMMIT_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProjectError(ValueError):
    """A project that cannot be created as asked; the message names the field."""


def project_create(
    *,
    slug: str,
    repository_url: str,
    forge: str = Forge.GITHUB,
    webhook_secret: str | None = None,
    default_branch: str = "main",
    test_command: str = "",
    test_timeout: int = 600,
    branch_filter: str = "*",
    tag_filter: str = "*",
    forge_api_url: str = "",
    forge_repository: str = "",
    forge_token: str = "",
    repository_credentials: str = "",
) -> Project:
    """Register a repository; a webhook secret is generated when none is given.

    Credentials in an http(s) URL are taken out of it and kept apart, encrypted: the URL is
    shown on pages and in the API, they never are.
    """
    project_slug_check(slug)
    project_repository_url_check(repository_url)
    repository_url, in_url = split_credentials(repository_url)
    repository_credentials = repository_credentials or in_url
    if forge not in Forge.values:
        raise ProjectError(f"forge {forge!r}: use one of {', '.join(Forge.values)}")
    if webhook_secret is not None and len(webhook_secret) < 16:
        raise ProjectError("secret: use at least 16 characters")
    project_settings_check(
        test_command=test_command,
        test_timeout=test_timeout,
        branch_filter=branch_filter,
        tag_filter=tag_filter,
        forge_api_url=forge_api_url,
    )
    key = repository_key(repository_url)
    if Project.objects.filter(slug=slug).exists():
        raise ProjectError(f"slug {slug!r}: a project with this slug exists")
    existing = Project.objects.filter(repository_key=key).first()
    if existing is not None:
        raise ProjectError(f"repository {repository_url!r} is already project {existing.slug!r}")
    try:
        return Project.objects.create(
            slug=slug,
            repository_url=repository_url,
            repository_key=key,
            forge=forge,
            webhook_secret=webhook_secret or secrets.token_hex(24),
            default_branch=default_branch,
            test_command=test_command,
            test_timeout=test_timeout,
            branch_filter=branch_filter,
            tag_filter=tag_filter,
            forge_api_url=forge_api_url,
            forge_repository=forge_repository or forge_repository_from_key(key),
            forge_token=forge_token,
            repository_credentials=repository_credentials,
        )
    except IntegrityError:
        raise ProjectError(f"project {slug!r} or its repository was registered meanwhile") from None


def project_slug_check(slug: str) -> None:
    """Raise ProjectError unless `slug` can name a project (and its registry repository)."""
    if not _SLUG.match(slug) or len(slug) > 63:
        raise ProjectError(
            f"slug {slug!r}: use lowercase letters, digits and single '-', '_' or '.' "
            "between them (at most 63 characters)"
        )


def project_repository_url_check(url: str) -> None:
    """Raise ProjectError unless this installation may clone `url` (schemes, hosts, local)."""
    try:
        validate_repository_url(
            url,
            allow_local=settings.DOCKYARD_ALLOW_LOCAL_REPOSITORIES,
            allowed_hosts=settings.DOCKYARD_ALLOWED_REPOSITORY_HOSTS,
        )
    except RepositoryURLError as error:
        raise ProjectError(f"repository: {error}") from None


def project_settings_check(
    *,
    test_command: str,
    test_timeout: int,
    branch_filter: str,
    tag_filter: str,
    forge_api_url: str,
) -> None:
    """Raise ProjectError naming the first of these settings a project cannot run with."""
    try:
        shlex.split(test_command)
    except ValueError as error:
        raise ProjectError(f"test command {test_command!r}: {error}") from None
    if forge_api_url and not forge_api_url.startswith(("https://", "http://")):
        raise ProjectError(f"forge API URL {forge_api_url!r}: use an http(s) URL")
    if not parse_globs(branch_filter) or not parse_globs(tag_filter):
        raise ProjectError("branch and tag filters: give at least one glob ('*' for all)")
    if test_timeout < 1:
        raise ProjectError(f"test timeout {test_timeout}: use a number of seconds above 0")


def run_create(
    *,
    project: Project,
    ref: str,
    commit_sha: str,
    commit_message: str = "",
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
    with transaction.atomic():
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
            trigger=trigger,
            triggered_by=triggered_by,
            kind=kind,
            pull_request=pull_request,
            target_branch=target_branch,
        )
        _record_run_event(run, from_status="", to_status=RunStatus.QUEUED, reason=trigger)
        Stage.objects.bulk_create(
            Stage(run=run, name=name, position=position)
            for position, name in enumerate(STAGE_ORDER)
        )
        if kind == RunKind.PULL_REQUEST:
            stage_skip(run=run, name=StageName.PUBLISH, reason="pull request runs publish nothing")
        stage_enqueue(run, StageName.CHECKOUT)
    return run


def access_project_manage(user: AbstractBaseUser | AnonymousUser) -> bool:
    """May `user` add projects and rotate their secrets? Staff (operators) may."""
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def access_run_control(user: AbstractBaseUser | AnonymousUser, project: Project) -> bool:
    """May `user` trigger, cancel and retry the project's runs? Staff (operators) may."""
    return access_project_manage(user)


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
        trigger=Trigger.MANUAL,
        kind=run.kind,
        pull_request=run.pull_request,
        target_branch=run.target_branch,
        triggered_by=run,
    )


def project_settings_update(
    *,
    project: Project,
    branch_filter: str,
    tag_filter: str,
    cancel_superseded: bool,
    build_pull_requests: bool,
    forge_token: str | None = None,
    actor: Actor | None = None,
) -> Project:
    """Change which pushes start runs and how runs of one branch treat each other.

    `forge_token` None leaves the token as it is; "" removes it. A change of token is audited
    (that it changed, never the value).
    """
    if not parse_globs(branch_filter) or not parse_globs(tag_filter):
        raise ProjectError("branch and tag filters: give at least one glob ('*' for all)")
    fields: dict[str, object] = {
        "branch_filter": " ".join(parse_globs(branch_filter)),
        "tag_filter": " ".join(parse_globs(tag_filter)),
        "cancel_superseded": cancel_superseded,
        "build_pull_requests": build_pull_requests,
    }
    token_changed = forge_token is not None and forge_token != project.forge_token
    if token_changed:
        fields["forge_token"] = forge_token
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**fields)
        if token_changed:
            audit_record(
                action=AuditAction.FORGE_TOKEN_CHANGED,
                target=project,
                actor=actor,
                detail={"set": bool(forge_token)},
            )
    for name, value in fields.items():
        setattr(project, name, value)
    return project


def project_permissions_update(
    *,
    project: Project,
    publish_repositories: list[str] | None = None,
    test_network_allowed: bool | None = None,
) -> Project:
    """Grant or take back what a project may do beyond its own namespace and a network-less
    test; None leaves a setting as it is. Audited (audit.signals) with what it was and became.
    """
    fields: list[str] = []
    if publish_repositories is not None:
        project.publish_repositories = "\n".join(
            project_publish_repositories_check(publish_repositories, slug=project.slug)
        )
        fields.append("publish_repositories")
    if test_network_allowed is not None:
        project.test_network_allowed = test_network_allowed
        fields.append("test_network_allowed")
    if fields:
        project.save(update_fields=fields)
    return project


def project_publish_repositories_check(repositories: list[str], *, slug: str) -> list[str]:
    """The repositories, cleaned and without duplicates; ProjectError names a bad one."""
    cleaned: list[str] = []
    for repository in (item.strip() for item in repositories):
        if not repository or repository in cleaned:
            continue
        if (problem := repository_name_problem(repository)) is not None:
            raise ProjectError(f"publish repositories: {problem}")
        if publish_repository_refusal(repository, namespace=project_namespace(slug)) is None:
            raise ProjectError(
                f"publish repositories: {repository!r} is inside the project's own namespace; "
                "it needs no grant"
            )
        cleaned.append(repository)
    return cleaned


def project_namespace(slug: str) -> str:
    """Where a project publishes without any grant: <registry>/<slug> and below."""
    return f"{settings.DOCKYARD_REGISTRY}/{slug}"


def project_spec_policy(project: Project) -> SpecPolicy:
    """What this installation lets the project's dockyard.yml ask for."""
    if settings.DOCKYARD_TEST_NETWORK != "host":
        network_refusal: str | None = (
            "true is refused: this installation runs tests without a network "
            "(DOCKYARD_TEST_NETWORK=none; an operator may set it to host and allow the project)"
        )
    elif not project.test_network_allowed:
        network_refusal = (
            f"true is refused: project {project.slug} may not run tests on the host's network "
            "(an operator allows it on the project: 'test network allowed')"
        )
    else:
        network_refusal = None
    return SpecPolicy(
        max_memory_bytes=settings.DOCKYARD_TEST_MAX_MEMORY,
        max_pids=settings.DOCKYARD_TEST_MAX_PIDS,
        max_cpus=settings.DOCKYARD_TEST_MAX_CPUS,
        max_timeout=settings.DOCKYARD_TEST_MAX_TIMEOUT,
        network_refusal=network_refusal,
        publish_namespace=project_namespace(project.slug),
        publish_grants=project.publish_grants,
    )


def project_secret_rotate(*, project: Project, actor: Actor | None = None) -> Project:
    """Give the project a new webhook secret; deliveries signed with the old one are refused."""
    project.webhook_secret = secrets.token_hex(24)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(webhook_secret=project.webhook_secret)
        audit_record(
            action=AuditAction.WEBHOOK_SECRET_CHANGED,
            target=project,
            actor=actor,
            detail={"set": True, "rotated": True},
        )
    return project


def run_cancel(*, run: PipelineRun, reason: str) -> bool:
    """Cancel a queued or running run; False when it had already ended.

    The stage that is running notices within a second or two (StageLog.stream asks) and stops
    its container; stages not yet started never start.
    """
    with transaction.atomic():
        locked = PipelineRun.objects.select_for_update().get(pk=run.pk)
        if locked.status in RUN_FINAL_STATES:
            return False
        unfinished = locked.stages.select_for_update().exclude(status__in=STAGE_FINAL_STATES)
        stages_transition(
            stages=list(unfinished.order_by("position")), to=StageStatus.CANCELLED, reason=reason
        )
        run_transition(run=locked, to=RunStatus.CANCELLED, reason=reason)
    run.status, run.finished_at = locked.status, locked.finished_at
    return True


def run_transition(*, run: PipelineRun, to: str, reason: str = "") -> PipelineRun:
    """Move a run to `to` under a row lock, refusing illegal moves; the move is recorded."""
    with transaction.atomic():
        # Only the run's row is locked: run_create holds the project's row while numbering.
        locked = (
            PipelineRun.objects.select_related("project")
            .select_for_update(of=("self",))
            .get(pk=run.pk)
        )
        check_run_transition(locked.status, to)
        now = timezone.now()
        update_fields = ["status"]
        if to == RunStatus.RUNNING and locked.started_at is None:
            locked.started_at = now
            update_fields.append("started_at")
        if to in RUN_FINAL_STATES:
            locked.finished_at = now
            update_fields.append("finished_at")
        _record_run_event(locked, from_status=locked.status, to_status=to, reason=reason)
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
    run.status, run.started_at, run.finished_at = (
        locked.status,
        locked.started_at,
        locked.finished_at,
    )
    return run


def stage_transition(*, stage: Stage, to: str, reason: str = "", task_id: str = "") -> Stage:
    """Move a stage to `to` under a row lock, refusing illegal moves; the move is recorded."""
    with transaction.atomic():
        locked = Stage.objects.select_for_update().get(pk=stage.pk)
        stages_transition(stages=[locked], to=to, reason=reason, task_id=task_id)
    stage.status, stage.started_at, stage.finished_at, stage.task_id = (
        locked.status,
        locked.started_at,
        locked.finished_at,
        locked.task_id,
    )
    return stage


def stages_transition(*, stages: list[Stage], to: str, reason: str = "", task_id: str = "") -> None:
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


def run_record_spec(*, run: PipelineRun, spec: dict[str, object]) -> None:
    """Store the dockyard.yml the config stage validated, for the stages after it."""
    PipelineRun.objects.filter(pk=run.pk).update(spec=spec)
    run.spec = spec


def stage_skip(*, run: PipelineRun, name: str, reason: str) -> None:
    """Skip a stage that has not started, e.g. the test stage of a stack without tests."""
    stage_transition(stage=run.stages.get(name=name), to=StageStatus.SKIPPED, reason=reason)


def project_secret_set(
    *, project: Project, name: str, value: str, actor: Actor | None = None
) -> ProjectSecret:
    """Create or replace one secret of a project; audited by name, never by value."""
    if not _SECRET_NAME.match(name):
        raise ProjectError(f"secret name {name!r}: use letters, digits and '_', not first a digit")
    if not value:
        raise ProjectError(f"secret {name}: the value is empty")
    with transaction.atomic():
        secret, created = ProjectSecret.objects.update_or_create(
            project=project, name=name, defaults={"value": value}
        )
        audit_record(
            action=AuditAction.PROJECT_SECRET_SET,
            target=project,
            actor=actor,
            detail={"name": name, "created": created},
        )
    return secret


def project_base_dependencies_set(*, project: Project, links: list[tuple[str, Project]]) -> None:
    """Record which of the project's images build on which other projects' published images."""
    with transaction.atomic():
        BaseDependency.objects.filter(project=project).delete()
        BaseDependency.objects.bulk_create(
            BaseDependency(project=project, image=image, base_project=base) for image, base in links
        )


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
        try:
            head = ref_head(
                url=project.repository_url,
                mirror_dir=mirror_dir(project),
                ref=f"refs/heads/{project.default_branch}",
                credentials=project.repository_credentials,
            )
        except GitCheckoutError:
            logger.exception("cannot find the head of %s to rebuild it on %s", project, base_run)
            continue
        runs.append(
            run_create(
                project=project,
                ref=f"refs/heads/{project.default_branch}",
                commit_sha=head,
                commit_message=f"rebuild on {base.slug} #{base_run.number}",
                trigger=Trigger.BASE_UPDATED,
                triggered_by=base_run,
            )
        )
    return runs


def mirror_dir(project: Project) -> Path:
    """Where this worker keeps the project's git mirror."""
    return settings.DOCKYARD_MIRRORS_DIR / f"{project.slug}.git"


def run_advance(*, run: PipelineRun) -> None:
    """Enqueue the next pending stage, or settle the run when none is left.

    Call inside a transaction holding the run's row lock.
    """
    stages = list(run.stages.order_by("position"))
    if any(stage.status == StageStatus.RUNNING for stage in stages):
        return
    failed = next((stage for stage in stages if stage.status == StageStatus.FAILED), None)
    if failed is not None:
        return
    pending = next((stage for stage in stages if stage.status == StageStatus.PENDING), None)
    if pending is not None:
        stage_enqueue(run, pending.name)
    elif run.status not in RUN_FINAL_STATES:
        run_transition(run=run, to=RunStatus.SUCCEEDED)
        run_id = run.pk
        dispatch.queue_dependents_rebuild(run_id=run_id)
        if run.deployable:
            dispatch.queue_release_from_run(run_id=run_id)


def run_fail(*, run: PipelineRun, stage: Stage, reason: str) -> None:
    """Fail `stage` and its run; the stages after it are skipped.

    Call inside a transaction holding the run's row lock.
    """
    stage_transition(stage=stage, to=StageStatus.FAILED, reason=reason)
    later = run.stages.select_for_update().filter(
        position__gt=stage.position, status=StageStatus.PENDING
    )
    stages_transition(
        stages=list(later.order_by("position")),
        to=StageStatus.SKIPPED,
        reason=f"{stage.name} failed",
    )
    PipelineRun.objects.filter(pk=run.pk).update(
        failed_stage=stage.name, failure_reason=reason[:10_000]
    )
    run.failed_stage, run.failure_reason = stage.name, reason
    if run.status not in RUN_FINAL_STATES:
        run_transition(run=run, to=RunStatus.FAILED, reason=f"{stage.name}: {reason}")


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


def _publish_status_on_commit(run_id: int) -> None:
    transaction.on_commit(lambda: run_status_publish(run_id))


def _record_run_event(run: PipelineRun, *, from_status: str, to_status: str, reason: str) -> None:
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


def forge_repository_from_key(key: str) -> str:
    """github.com/acme/web -> acme/web: how the forge's API names the repository."""
    if key.startswith("file://"):
        return ""
    return key.partition("/")[2]


def stage_enqueue(run: PipelineRun, stage_name: str) -> None:
    """Send the stage's task once the transaction commits, noting its id and when it went.

    The id lets the reaper ask the broker whether the message is still there (a Redis
    restart loses it) and tell a stale delivery from the one that owns the stage.
    """
    run_id = run.pk
    job_enqueue(
        Stage.objects.get(run_id=run_id, name=stage_name),
        send=lambda task_id: dispatch.queue_stage(
            stage_name=stage_name, run_id=run_id, task_id=task_id
        ),
    )
