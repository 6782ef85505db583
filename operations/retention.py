"""Retention: old runs' logs, old webhook deliveries, unused local images and finished
containers are pruned.

What is kept, whatever its age: the runs themselves with their stages and events (the
timeline), each project's newest DOCKYARD_LOG_RETENTION_RUNS runs' logs, every image a release
needs that an environment serves, may roll back to or keeps a container of, the newest base of
each project's image stack (the build cache), and every container that runs, is live or is kept
for rollback. Only what this installation can name is touched: images of its own projects and
containers carrying its own instance label, so a shared engine's other users are left alone.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from builds.caching import CACHE_LABEL
from builds.candidates import candidates_prune
from builds.models import CacheVolume, LayerBuild, LayerRole
from infrastructure.docker_engine import (
    MANAGED_LABEL,
    ContainerSummary,
    DockerEngine,
    DockerEngineError,
    ImageInUse,
    LocalImage,
)
from pipelines.models import LogChunk, PipelineRun
from pipelines.selectors import latest_published_run
from pipelines.states import RUN_FINAL_STATES
from pipelines.workspace import workspaces_of_finished_runs_remove
from projects.models import Project
from releases.models import Deployment, Environment, HostDeployment, Release
from releases.selectors import rollback_target
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentStatus, HostStatus
from webhooks.models import Delivery

logger = logging.getLogger(__name__)

# Deleting a run's log chunks a few thousand rows at a time keeps each statement (and the
# locks it holds) short on a table of millions of rows, while the web reads and workers write.
LOG_CHUNK_BATCH = 2000
DELIVERY_BATCH = 500
RUN_BATCH = 100


@dataclass(frozen=True)
class PrunedContainer:
    id: str
    name: str
    reason: str


@dataclass(frozen=True)
class PrunedImage:
    id: str
    references: tuple[str, ...]
    size_bytes: int


@dataclass
class PruneReport:
    """What a prune removed (or, in a dry run, would remove)."""

    dry_run: bool = False
    log_chunks_deleted: int = 0
    # Webhook deliveries acted on over DOCKYARD_DELIVERY_RETENTION_DAYS ago.
    deliveries_deleted: int = 0
    runs_log_pruned: list[int] = field(default_factory=list)
    containers_removed: list[PrunedContainer] = field(default_factory=list)
    images_removed: list[PrunedImage] = field(default_factory=list)
    # Test caches (volumes) unused for DOCKYARD_CACHE_RETENTION_DAYS.
    cache_volumes_removed: list[str] = field(default_factory=list)
    # Candidates (repository@digest) deleted from the registry.
    candidates_removed: list[str] = field(default_factory=list)
    # Runs whose workspace on this host went.
    workspaces_removed: list[int] = field(default_factory=list)
    # As the engine's disk usage says, before and after; None in a dry run or when nothing
    # went. Builds running meanwhile make it an approximation.
    bytes_reclaimed: int | None = None
    # What could not be done (the engine unreachable): the rest was still done.
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        verb = "would prune" if self.dry_run else "pruned"
        summary = (
            f"{verb} the logs of {len(self.runs_log_pruned)} run(s) "
            f"({self.log_chunks_deleted} chunks), {self.deliveries_deleted} webhook "
            f"deliveries, {len(self.containers_removed)} container(s), "
            f"{len(self.images_removed)} image(s), "
            f"{len(self.cache_volumes_removed)} test cache(s), "
            f"{len(self.candidates_removed)} candidate(s), "
            f"{len(self.workspaces_removed)} workspace(s)"
        )
        if self.bytes_reclaimed is not None:
            summary += f", {self.bytes_reclaimed / 1e6:.1f} MB reclaimed"
        if self.problems:
            summary += f"; problems: {'; '.join(self.problems)}"
        return summary


def retention_prune(*, now: datetime | None = None, dry_run: bool = False) -> PruneReport:
    """All of retention, from this worker: the installation's part, then this host's."""
    report = installation_prune(now=now, dry_run=dry_run)
    host = host_prune(now=now, dry_run=dry_run)
    for name in ("containers_removed", "images_removed", "cache_volumes_removed", "problems"):
        getattr(report, name).extend(getattr(host, name))
    report.workspaces_removed = host.workspaces_removed
    report.bytes_reclaimed = host.bytes_reclaimed
    return report


def installation_prune(*, now: datetime | None = None, dry_run: bool = False) -> PruneReport:
    """What is the installation's, whichever worker does it: old logs in the database, old
    candidates in the registry."""
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    _logs_prune(report, now=now)
    _deliveries_prune(report, now=now)
    candidates = candidates_prune(
        finished_before=now - timedelta(hours=settings.DOCKYARD_CANDIDATE_RETENTION_HOURS),
        dry_run=dry_run,
    )
    report.candidates_removed = candidates.removed
    report.problems += candidates.problems
    return report


def host_prune(*, now: datetime | None = None, dry_run: bool = False) -> PruneReport:
    """What is this host's: finished containers, unused images and test caches on its
    engine, and the workspaces of runs that are over on its disk."""
    now = now or timezone.now()
    report = PruneReport(dry_run=dry_run)
    report.workspaces_removed = workspaces_of_finished_runs_remove(dry_run=dry_run)
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            # Containers first: an image is unused only once its stopped containers are gone.
            _containers_prune(report, engine)
            _images_prune(report, engine, now=now)
            _cache_volumes_prune(report, engine, now=now)
    except DockerEngineError as error:
        logger.warning("retention: %s", error)
        report.problems.append(str(error))
    return report


def _cache_volumes_prune(report: PruneReport, engine: DockerEngine, *, now: datetime) -> None:
    """Remove this installation's test caches that no run used for a while, with their rows;
    a volume with no row (its project deleted) goes too. One in use by a container stays."""
    cutoff = now - timedelta(days=settings.DOCKYARD_CACHE_RETENTION_DAYS)
    recent = set(
        CacheVolume.objects.filter(last_used_at__gte=cutoff).values_list("volume", flat=True)
    )
    for name, labels in engine.volumes():
        if labels.get(CACHE_LABEL) != "1" or name in recent:
            continue
        if report.dry_run or engine.volume_remove(name):
            report.cache_volumes_removed.append(name)
            if not report.dry_run:
                CacheVolume.objects.filter(volume=name).delete()


def _logs_prune(report: PruneReport, *, now: datetime) -> None:
    cutoff = now - timedelta(days=settings.DOCKYARD_LOG_RETENTION_DAYS)
    newest = (
        PipelineRun.objects.annotate(
            newness=Window(RowNumber(), partition_by=[F("project_id")], order_by=F("number").desc())
        )
        .filter(newness__lte=settings.DOCKYARD_LOG_RETENTION_RUNS)
        .values("pk")
    )
    expired = (
        PipelineRun.objects.filter(status__in=RUN_FINAL_STATES, finished_at__lt=cutoff)
        .exclude(pk__in=newest)
        .filter(Exists(LogChunk.objects.filter(run=OuterRef("pk"))))
        .order_by("pk")
    )
    # Selected once: ranking every run of every project is the expensive part.
    run_ids = list(expired.values_list("pk", flat=True))
    if report.dry_run:
        report.runs_log_pruned = run_ids
        report.log_chunks_deleted = LogChunk.objects.filter(run__in=expired.values("pk")).count()
        return
    for start in range(0, len(run_ids), RUN_BATCH):
        # Each batch commits on its own; a run is marked once its whole log is gone, so one
        # interrupted half-way is simply picked up again next time.
        batch = run_ids[start : start + RUN_BATCH]
        report.log_chunks_deleted += _log_chunks_delete(batch)
        PipelineRun.objects.filter(pk__in=batch).update(log_pruned_at=now)
        report.runs_log_pruned.extend(batch)


def _deliveries_prune(report: PruneReport, *, now: datetime) -> None:
    """Old deliveries go, bodies and all (up to 25 MB each); one not yet acted on stays
    whatever its age, for its run is still to come."""
    cutoff = now - timedelta(days=settings.DOCKYARD_DELIVERY_RETENTION_DAYS)
    expired = Delivery.objects.filter(received_at__lt=cutoff, acted_at__isnull=False).order_by()
    if report.dry_run:
        report.deliveries_deleted = expired.count()
        return
    # The webhook endpoint writes to this table all day.
    report.deliveries_deleted = _deleted_in_batches(expired, DELIVERY_BATCH)


def _log_chunks_delete(run_ids: list[int]) -> int:
    return _deleted_in_batches(LogChunk.objects.filter(run_id__in=run_ids), LOG_CHUNK_BATCH)


def _deleted_in_batches(rows: QuerySet[Any], batch: int) -> int:
    """Delete `rows` `batch` at a time, each its own statement (short locks on a table others
    read and write meanwhile); how many went."""
    deleted = 0
    while True:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        _, by_model = rows.model._default_manager.filter(pk__in=ids).delete()
        deleted += by_model.get(rows.model._meta.label, 0)


def _containers_prune(report: PruneReport, engine: DockerEngine) -> None:
    kept: dict[int, set[str]] = {}
    for container in engine.containers():
        if container.labels.get(MANAGED_LABEL) != settings.DOCKYARD_INSTANCE:
            continue
        if "dockyard.run" in container.labels:
            reason = _run_container_over(container)
            # Nothing of a finished run still needs its containers, running or not: its own
            # sweep (pipelines.stages.cleanup.run_cleanup) would have removed them had it run.
            if reason and not report.dry_run:
                engine.remove_container(container.id)
        elif "dockyard.deployment" in container.labels:
            reason = _deployment_container_over(container, kept)
            # Never by force: one that started meanwhile (a rollback) stays.
            if reason and not report.dry_run and not engine.remove_stopped_container(container.id):
                continue
        else:
            continue
        if reason:
            report.containers_removed.append(
                PrunedContainer(id=container.id, name=container.name, reason=reason)
            )


def _run_container_over(container: ContainerSummary) -> str:
    """Why a test or build container may go ("" if it may not)."""
    run = (
        PipelineRun.objects.filter(pk=_number(container.labels["dockyard.run"]))
        .select_related("project")
        .first()
    )
    if run is None:
        return f"run {container.labels['dockyard.run']} no longer exists"
    if run.status in RUN_FINAL_STATES:
        return f"container of {run}, which has {run.status}"
    return ""


def _deployment_container_over(container: ContainerSummary, kept: dict[int, set[str]]) -> str:
    """Why a deployed app's container may go ("" if it may not): never a running one.

    `kept` remembers each environment's kept containers across calls.
    """
    if container.state == "running":
        return ""
    deployment = (
        Deployment.objects.filter(pk=_number(container.labels["dockyard.deployment"]))
        .select_related("environment__project", "release")
        .first()
    )
    if deployment is None:
        return f"deployment {container.labels['dockyard.deployment']} no longer exists"
    if deployment.status not in DEPLOYMENT_FINAL_STATES:
        return ""
    if deployment.status == DeploymentStatus.FAILED:
        return f"{deployment} failed"
    environment = deployment.environment
    if environment.pk not in kept:
        kept[environment.pk] = _kept_containers(environment)
    if container.id in kept[environment.pk]:
        return ""
    return (
        f"{deployment} is neither live nor among the {settings.DOCKYARD_KEEP_CONTAINERS} "
        "kept for rollback"
    )


def _kept_containers(environment: Environment) -> set[str]:
    """The live containers, those kept for rollback, and any a deployment under way may reuse,
    on every host of the environment.

    As releases.executor keeps them after each deployment, plus the rollback target's.
    """
    finished = HostDeployment.objects.filter(
        deployment__environment=environment,
        deployment__status=DeploymentStatus.SUCCEEDED,
        status=HostStatus.FINISHED,
    ).exclude(container_id="")
    newest: dict[int, list[str]] = {}
    for host_id, container_id in finished.order_by("-finished_at", "-id").values_list(
        "host_id", "container_id"
    ):
        on_host = newest.setdefault(host_id, [])
        if container_id not in on_host:
            on_host.append(container_id)
    kept = {
        container_id
        for on_host in newest.values()
        for container_id in on_host[: settings.DOCKYARD_KEEP_CONTAINERS + 1]
    }
    target = rollback_target(environment)
    if target is not None:
        kept.update(finished.filter(deployment=target).values_list("container_id", flat=True))
    # A rollback under way restarts a kept container of its release, whichever it finds.
    under_way = environment.deployments.exclude(status__in=DEPLOYMENT_FINAL_STATES)
    kept.update(
        finished.filter(deployment__release__in=under_way.values("release")).values_list(
            "container_id", flat=True
        )
    )
    return kept


@dataclass
class _Needed:
    """Images retention must leave, by id and by name."""

    ids: set[str] = field(default_factory=set)
    references: set[str] = field(default_factory=set)

    def covers(self, image: LocalImage) -> bool:
        return image.id in self.ids or not self.references.isdisjoint((*image.tags, *image.digests))


def _images_prune(report: PruneReport, engine: DockerEngine, *, now: datetime) -> None:
    cutoff = now - timedelta(hours=settings.DOCKYARD_IMAGE_RETENTION_HOURS)
    owners = _RepositoryOwners()
    needed = _needed_images()
    busy = _busy_projects()
    # In a dry run, the containers that would have gone first count as gone.
    going = {container.id for container in report.containers_removed}
    in_use = {c.image_id for c in engine.containers() if c.id not in going}
    before = None if report.dry_run else engine.layers_size_bytes()
    for image in engine.images():
        projects = {owners.project_of(reference) for reference in (*image.tags, *image.digests)}
        if not projects or None in projects:
            # Nameless (nobody's to say whose) or also named by someone else: not ours to remove.
            continue
        if (
            image.touched_at >= cutoff
            or image.id in in_use
            or needed.covers(image)
            # A project at work may have just pulled an old image (a cached base, a release
            # to deploy) that no row names yet; its images wait for the next prune.
            or not busy.isdisjoint(projects)
        ):
            continue
        if not report.dry_run:
            try:
                # Tags first: the last one takes the image with it, unless a digest from
                # another repository still names it, which then goes too.
                for reference in (*image.tags, *image.digests):
                    engine.remove_image(reference)
            except ImageInUse as refusal:
                logger.info("retention: kept %s: %s", image.id[:19], refusal)
                continue
        report.images_removed.append(
            PrunedImage(
                id=image.id, references=(*image.tags, *image.digests), size_bytes=image.size_bytes
            )
        )
    if before is not None and report.images_removed:
        report.bytes_reclaimed = max(before - engine.layers_size_bytes(), 0)


def _needed_images() -> _Needed:
    needed = _Needed()
    release_ids: set[int] = set()
    for environment in Environment.objects.all():
        if environment.current_release_id is not None:
            release_ids.add(environment.current_release_id)
        target = rollback_target(environment)
        if target is not None:
            release_ids.add(target.release_id)
        # Conservative: every release among the environment's newest deployments, as many as
        # it keeps containers for (and the live one), whether or not its container remains.
        release_ids.update(
            environment.deployments.filter(status=DeploymentStatus.SUCCEEDED)
            .order_by("-finished_at", "-id")
            .values_list("release_id", flat=True)[: settings.DOCKYARD_KEEP_CONTAINERS + 1]
        )
    # A deployment under way is about to run its release's image.
    release_ids.update(
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES).values_list(
            "release_id", flat=True
        )
    )
    for image, run_image_id in Release.objects.filter(pk__in=release_ids).values_list(
        "image", "run__image_id"
    ):
        needed.references.add(image)
        if run_image_id:
            needed.ids.add(run_image_id)
    # The build cache: the newest base of each image of each project's stack, so the next
    # build finds it on this engine (a cache hit) instead of pulling or building it.
    newest_bases = (
        LayerBuild.objects.filter(role=LayerRole.BASE)
        .annotate(
            newness=Window(
                RowNumber(),
                partition_by=[F("run__project_id"), F("name")],
                order_by=[F("run__number").desc(), F("pk").desc()],
            )
        )
        .filter(newness=1)
    )
    for layer in newest_bases:
        needed.ids.add(layer.image_id)
        if layer.reference:
            needed.references.add(layer.reference)
            repository = layer.reference.partition("@")[0]
            needed.references.add(f"{repository}:{layer.cache_key}")
    # What `from: project:<slug>` builds FROM: each project's newest published image.
    for project in Project.objects.all():
        published = latest_published_run(project)
        if published is not None:
            needed.references.add(f"{published.image_repository}@{published.image_digest}")
            if published.image_id:
                needed.ids.add(published.image_id)
    return needed


def _busy_projects() -> set[str]:
    """Slugs of the projects with a run or a deployment under way."""
    unfinished_runs = PipelineRun.objects.filter(project=OuterRef("pk")).exclude(
        status__in=RUN_FINAL_STATES
    )
    active_deployments = Deployment.objects.filter(environment__project=OuterRef("pk")).exclude(
        status__in=DEPLOYMENT_FINAL_STATES
    )
    return set(
        Project.objects.filter(
            Q(Exists(unfinished_runs)) | Q(Exists(active_deployments))
        ).values_list("slug", flat=True)
    )


class _RepositoryOwners:
    """Which project an image name belongs to, by the names Dockyard gives images.

    `dockyard/<slug>/<image>:run-<id>` (a run's app layers), `<registry>/<slug>/<image>:<key>`
    (bases), `<registry>/<slug>` and each run's publish repository (published images, and
    releases pulled to deploy them).
    """

    def __init__(self) -> None:
        self._slugs = set(Project.objects.values_list("slug", flat=True))
        self._published: dict[str, str] = dict(
            PipelineRun.objects.exclude(image_repository="")
            .values_list("image_repository", "project__slug")
            .distinct()
        )

    def project_of(self, reference: str) -> str | None:
        repository = _repository(reference)
        if repository in self._published:
            return self._published[repository]
        for prefix in ("dockyard/", f"{settings.DOCKYARD_REGISTRY}/"):
            if repository.startswith(prefix):
                slug = repository.removeprefix(prefix).split("/")[0]
                return slug if slug in self._slugs else None
        return None


def _repository(reference: str) -> str:
    """`registry:5000/name` of `registry:5000/name:tag` or `registry:5000/name@sha256:...`."""
    name, at, _ = reference.partition("@")
    if at:
        return name
    name, colon, tag = reference.rpartition(":")
    return name if colon and "/" not in tag else reference


def _number(text: str) -> int:
    return int(text) if text.isdigit() else -1
