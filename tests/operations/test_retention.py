"""Retention: old logs, unused images and finished containers go; what a rollback needs stays."""

import uuid
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from builds.models import CacheSource, LayerBuild, LayerRole
from infrastructure.docker_engine import DockerEngine
from infrastructure.registry import manifest_digest
from operations.retention import retention_prune
from pipelines.models import LogChunk, PipelineRun, RunEvent
from pipelines.services import do_run_transition, run_create, run_record_image
from pipelines.states import RunStatus
from projects.models import Project
from releases.models import Deployment, Environment, HostDeployment, Release
from releases.services import local_host
from releases.states import DeploymentStatus, HostStatus
from tests.factories import BUSYBOX, make_project

pytestmark = pytest.mark.django_db

REGISTRY = settings.DOCKYARD_REGISTRY
# Far enough ahead that every image built by the test is past DOCKYARD_IMAGE_RETENTION_HOURS.
LATER = timedelta(hours=73)


@pytest.fixture(autouse=True)
def retention_settings(settings: Any) -> None:
    settings.DOCKYARD_LOG_RETENTION_DAYS = 30
    settings.DOCKYARD_LOG_RETENTION_RUNS = 2
    settings.DOCKYARD_IMAGE_RETENTION_HOURS = 72
    settings.DOCKYARD_KEEP_CONTAINERS = 1


def finished_run(
    project: Project, *, days_ago: float = 0, status: str = RunStatus.SUCCEEDED
) -> PipelineRun:
    run = run_create(
        project=project, ref="refs/heads/main", commit_sha=uuid.uuid4().hex * 2, trigger="webhook"
    )
    do_run_transition(run=run, to=RunStatus.RUNNING)
    if status != RunStatus.RUNNING:
        do_run_transition(run=run, to=status)
        # The test stands in for the passing of time.
        run.finished_at = timezone.now() - timedelta(days=days_ago)
        PipelineRun.objects.filter(pk=run.pk).update(finished_at=run.finished_at)
    return run


def logged(run: PipelineRun, lines: int) -> PipelineRun:
    stage = run.stages.get(name="build")
    LogChunk.objects.bulk_create(
        LogChunk(run=run, stage=stage, seq=seq, text=f"line {seq}\n") for seq in range(1, lines + 1)
    )
    return run


def chunks(run: PipelineRun) -> int:
    return LogChunk.objects.filter(run=run).count()


def test_old_runs_lose_their_logs_but_keep_their_timeline_the_newest_keep_theirs() -> None:
    web, api = make_project(), make_project()
    ancient = logged(finished_run(web, days_ago=40), 3)
    # More chunks than one batch deletes: the batches go on until the log is gone.
    huge = logged(finished_run(web, days_ago=35), 2500)
    recent = logged(finished_run(web, days_ago=10), 4)
    # The project's two newest runs keep their logs whatever their age, unfinished ones too.
    newest_finished = logged(finished_run(web, days_ago=40), 5)
    running = logged(finished_run(web, status=RunStatus.RUNNING), 6)
    # Another project's only run is its newest.
    lone = logged(finished_run(api, days_ago=60), 7)
    stages, events = ancient.stages.count(), RunEvent.objects.filter(run=ancient).count()

    report = retention_prune()

    assert sorted(report.runs_log_pruned) == sorted([ancient.pk, huge.pk])
    assert report.log_chunks_deleted == 3 + 2500
    assert [chunks(run) for run in (ancient, huge)] == [0, 0]
    assert [chunks(run) for run in (recent, newest_finished, running, lone)] == [4, 5, 6, 7]
    ancient.refresh_from_db()
    assert ancient.log_pruned_at is not None and ancient.status == RunStatus.SUCCEEDED
    assert ancient.stages.count() == stages == 5
    assert RunEvent.objects.filter(run=ancient).count() == events
    assert not PipelineRun.objects.filter(pk__in=[recent.pk, lone.pk], log_pruned_at__isnull=False)


def test_a_run_whose_log_was_pruned_says_so_on_its_page(client: Client) -> None:
    run = logged(finished_run(make_project(), days_ago=40), 2)
    finished_run(run.project)
    finished_run(run.project)
    retention_prune()
    client.force_login(User.objects.create_user("viewer"))
    page = client.get(f"/runs/{run.pk}/", follow=True).content.decode()
    assert "Log pruned on" in page


def test_without_an_engine_logs_are_still_pruned_and_the_command_says_what_failed(
    settings: Any, tmp_path: Path
) -> None:
    settings.DOCKER_HOST = f"unix://{tmp_path}/no-engine.sock"
    project = make_project()
    old = logged(finished_run(project, days_ago=40), 3)
    finished_run(project)
    finished_run(project)

    report = retention_prune()
    assert report.runs_log_pruned == [old.pk] and chunks(old) == 0
    assert report.problems and "cannot reach the Docker engine" in report.problems[0]
    with pytest.raises(CommandError, match="cannot reach the Docker engine"):
        call_command("prune", stdout=StringIO())


@pytest.mark.docker
def test_the_prune_command_dry_run_prints_what_would_go_and_removes_nothing() -> None:
    project = make_project()
    old = logged(finished_run(project, days_ago=40), 3)
    finished_run(project)
    finished_run(project)

    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert "logs: would remove 3 chunks of 1 run(s) finished over 30 days ago" in out.getvalue()
    assert chunks(old) == 3

    out = StringIO()
    call_command("prune", stdout=out)
    assert "logs: removed 3 chunks of 1 run(s)" in out.getvalue()
    assert chunks(old) == 0


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    with DockerEngine(settings.DOCKER_HOST) as engine:
        yield engine


@pytest.fixture
def project(docker_client: docker.DockerClient) -> Iterator[Project]:
    """A project whose images and containers (named for its unique slug) go with the test."""
    project = make_project()
    yield project
    for container in docker_client.containers.list(all=True, sparse=True):
        if project.slug in (container.attrs.get("Names") or [""])[0]:
            container.remove(force=True)
    for image in docker_client.images.list():
        for name in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if project.slug in name:
                # Its last tag may have taken this name with it.
                with suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(name, force=True)


class Images:
    """Builds small, distinct images offline (FROM scratch with the static busybox)."""

    def __init__(self, engine: DockerEngine, folder: Path, slug: str) -> None:
        self.engine, self.folder, self.slug = engine, folder, slug

    def build(self, repository: str, tag: str) -> str:
        context = self.folder / uuid.uuid4().hex
        context.mkdir()
        (context / "busybox").write_bytes(BUSYBOX.read_bytes())
        (context / "busybox").chmod(0o755)
        # Content unique to this test: no image is shared with another test's, by the cache.
        (context / "version").write_text(f"{self.slug} {repository}:{tag}\n")
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY version /version\n"
            'CMD ["/bin/busybox", "sleep", "600"]\n'
        )
        return self.engine.build_image(
            context_dir=context,
            dockerfile=context / "Dockerfile",
            tag=f"{repository}:{tag}",
            on_output=lambda _: None,
        )

    def push(self, image_id: str, repository: str, tag: str) -> str:
        """Pushes it to the registry; returns repository@digest."""
        digest = self.engine.push_image(
            image_id=image_id, repository=repository, tag=tag, on_output=lambda _: None
        )
        return f"{repository}@{digest}"


@pytest.fixture
def images(engine: DockerEngine, tmp_path: Path, project: Project) -> Images:
    return Images(engine, tmp_path, project.slug)


def release_of(project: Project, images: Images, version: str) -> Release:
    """A passed run that published an image, and the release made of it."""
    repository = f"{REGISTRY}/{project.slug}"
    image_id = images.build(f"dockyard/{project.slug}/app", f"run-{version}")
    image = images.push(image_id, repository, version)
    run = finished_run(project)
    run_record_image(
        run=run,
        image_id=image_id,
        image_repository=repository,
        image_digest=image.partition("@")[2],
        published_tags=[version],
    )
    number = Release.objects.filter(project=project).count() + 1
    return Release.objects.create(
        project=project,
        number=number,
        run=run,
        commit_sha=run.commit_sha,
        image=image,
        deploy_config={},
    )


def base_layer(project: Project, images: Images, key: str) -> LayerBuild:
    """A base of the project's stack, built under its cache key by a run."""
    repository = f"{REGISTRY}/{project.slug}/base"
    image_id = images.build(repository, key)
    return LayerBuild.objects.create(
        run=finished_run(project),
        name="base",
        position=0,
        role=LayerRole.BASE,
        cache_key=key,
        source=CacheSource.BUILT,
        image_id=image_id,
        reference=images.push(image_id, repository, key),
        duration_seconds=1.0,
        size_bytes=0,
    )


def staging(project: Project) -> Environment:
    return Environment.objects.create(
        project=project, name="staging", frontend_port=19700, blue_port=19750, green_port=19751
    )


def deployed(
    environment: Environment,
    release: Release,
    *,
    container_id: str = "",
    slot: str = "blue",
    status: str = DeploymentStatus.SUCCEEDED,
) -> Deployment:
    deployment = Deployment.objects.create(
        environment=environment,
        release=release,
        kind="deploy",
        status=status,
        slot=slot,
        finished_at=timezone.now(),
    )
    HostDeployment.objects.create(
        deployment=deployment,
        host=local_host(),
        position=0,
        batch=0,
        status=HostStatus.FINISHED if status == DeploymentStatus.SUCCEEDED else HostStatus.FAILED,
        container_id=container_id,
        finished_at=timezone.now(),
    )
    if status == DeploymentStatus.SUCCEEDED:
        Environment.objects.filter(pk=environment.pk).update(
            current_release=release, live_slot=slot
        )
    return deployment


def exists(docker_client: docker.DockerClient, reference: str) -> bool:
    try:
        docker_client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.mark.docker
def test_images_of_the_current_and_rollback_releases_and_the_newest_base_survive_old_unused_ones_go(
    project: Project, images: Images, docker_client: docker.DockerClient
) -> None:
    first, second, third = (release_of(project, images, f"v{n}") for n in (1, 2, 3))
    environment = staging(project)
    deployed(environment, first)
    deployed(environment, second)
    deployed(environment, third)
    # Deployed again: the two newest deployments are both of the current release, so only
    # the rollback target (the last good one of another release) keeps the second's image.
    deployed(environment, third)
    old_base, new_base = (
        base_layer(project, images, "a" * 64),
        base_layer(project, images, "b" * 64),
    )
    leftover_run = finished_run(project)
    leftover = images.build(f"dockyard/{project.slug}/app", f"run-{leftover_run.pk}")
    # An old image nobody's release needs, but a container (anyone's) still uses it.
    used = images.build(f"dockyard/{project.slug}/app", f"run-used-{leftover_run.pk}")
    docker_client.containers.create(used, name=f"user-of-{project.slug}", network_mode="none")
    # Another installation's project (not in this database) on the same engine.
    stranger = images.build(f"{REGISTRY}/elsewhere-{project.slug}", "v1")

    assert retention_prune().images_removed == []  # all younger than 72 hours

    report = retention_prune(now=timezone.now() + LATER)

    assert exists(docker_client, second.image) and exists(docker_client, third.image)
    assert exists(docker_client, new_base.reference)
    assert exists(docker_client, f"{REGISTRY}/{project.slug}/base:{'b' * 64}")
    assert exists(docker_client, used) and exists(docker_client, stranger)
    assert not exists(docker_client, first.image)
    assert not exists(docker_client, PipelineRun.objects.get(pk=first.run_id).image_id)
    assert not exists(docker_client, old_base.image_id)
    assert not exists(docker_client, leftover)
    assert sorted(image.id for image in report.images_removed) == sorted(
        [PipelineRun.objects.get(pk=first.run_id).image_id, old_base.image_id, leftover]
    )
    assert report.bytes_reclaimed is not None and report.problems == []


@pytest.mark.docker
def test_images_of_a_project_at_work_wait_for_the_next_prune(
    project: Project, images: Images, docker_client: docker.DockerClient
) -> None:
    old_run = finished_run(project)
    old = images.build(f"dockyard/{project.slug}/app", f"run-{old_run.pk}")
    # A run under way may have just pulled an old image that no row names yet.
    running = finished_run(project, status=RunStatus.RUNNING)

    retention_prune(now=timezone.now() + LATER)
    assert exists(docker_client, old)

    do_run_transition(run=running, to=RunStatus.SUCCEEDED)
    retention_prune(now=timezone.now() + LATER)
    assert not exists(docker_client, old)


def container(
    docker_client: docker.DockerClient,
    image: str,
    name: str,
    labels: dict[str, str],
    *,
    running: bool = False,
) -> str:
    labels = {**labels, "dockyard.managed": settings.DOCKYARD_INSTANCE}
    if running:
        created = docker_client.containers.run(
            image, name=name, labels=labels, network_mode="none", detach=True
        )
    else:
        created = docker_client.containers.create(
            image, name=name, labels=labels, network_mode="none"
        )
    return str(created.id)


def container_exists(docker_client: docker.DockerClient, container_id: str) -> bool:
    try:
        docker_client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


@pytest.mark.docker
def test_containers_whose_work_is_over_go_while_live_kept_and_running_ones_stay(
    project: Project, images: Images, docker_client: docker.DockerClient, settings: Any
) -> None:
    settings.DOCKYARD_KEEP_CONTAINERS = 2
    image = images.build(f"dockyard-test/retention-{project.slug}", "latest")
    environment = staging(project)
    releases = [
        Release.objects.create(
            project=project,
            number=number,
            run=finished_run(project),
            commit_sha="f" * 40,
            image=f"{REGISTRY}/{project.slug}@sha256:{str(number) * 64}",
            deploy_config={},
        )
        for number in (1, 2, 3, 4, 5)
    ]
    app_containers = {}
    # Releases 1 to 4 deployed in turn; 4 is live, its container the only one running.
    for release, slot in zip(releases[:4], ("blue", "green", "blue", "green"), strict=True):
        deployment = deployed(environment, release, slot=slot)
        app_containers[release.number] = container(
            docker_client,
            image,
            f"dockyard-{project.slug}-staging-{slot}-r{release.number}",
            {
                "dockyard.project": project.slug,
                "dockyard.environment": "staging",
                "dockyard.slot": slot,
                "dockyard.release": str(release.number),
                "dockyard.deployment": str(deployment.pk),
            },
            running=release.number == 4,
        )
        HostDeployment.objects.filter(deployment=deployment).update(
            container_id=app_containers[release.number]
        )
    failed = deployed(environment, releases[4], slot="blue", status=DeploymentStatus.FAILED)
    failed_container = container(
        docker_client,
        image,
        f"dockyard-{project.slug}-staging-blue-r5",
        {"dockyard.project": project.slug, "dockyard.deployment": str(failed.pk)},
    )
    finished, under_way = finished_run(project), finished_run(project, status=RunStatus.RUNNING)
    test_labels = {"dockyard.project": project.slug, "dockyard.role": "test"}
    finished_test = container(
        docker_client,
        image,
        f"test-{project.slug}-finished",
        {**test_labels, "dockyard.run": str(finished.pk)},
    )
    running_test = container(
        docker_client,
        image,
        f"test-{project.slug}-running",
        {**test_labels, "dockyard.run": str(under_way.pk)},
    )
    # Another installation's container on the same engine, for a run id this one has too.
    strangers = docker_client.containers.create(
        image,
        name=f"stranger-{project.slug}",
        labels={"dockyard.managed": "elsewhere", "dockyard.run": str(finished.pk)},
        network_mode="none",
    )

    report = retention_prune()

    assert sorted(c.id for c in report.containers_removed) == sorted(
        [app_containers[1], failed_container, finished_test]
    )
    # Live (running), and the two kept for rollback (DOCKYARD_KEEP_CONTAINERS=2).
    assert docker_client.containers.get(app_containers[4]).status == "running"
    assert container_exists(docker_client, app_containers[3])
    assert container_exists(docker_client, app_containers[2])
    assert not container_exists(docker_client, app_containers[1])
    assert not container_exists(docker_client, failed_container)
    assert not container_exists(docker_client, finished_test)
    assert container_exists(docker_client, running_test)
    assert container_exists(docker_client, strangers.id)


@pytest.mark.docker
def test_a_dry_run_reports_what_would_go_and_removes_nothing(
    project: Project, images: Images, docker_client: docker.DockerClient
) -> None:
    old = logged(finished_run(project, days_ago=40), 3)
    finished_run(project)
    leftover_run = finished_run(project)
    leftover = images.build(f"dockyard/{project.slug}/app", f"run-{leftover_run.pk}")
    test_container = container(
        docker_client,
        leftover,
        f"test-{project.slug}",
        {"dockyard.project": project.slug, "dockyard.run": str(leftover_run.pk)},
    )

    report = retention_prune(now=timezone.now() + LATER, dry_run=True)

    assert report.runs_log_pruned == [old.pk] and report.log_chunks_deleted == 3
    assert [c.id for c in report.containers_removed] == [test_container]
    # Its image would go once the container that uses it has gone.
    assert [image.id for image in report.images_removed] == [leftover]
    assert report.bytes_reclaimed is None
    assert chunks(old) == 3
    assert container_exists(docker_client, test_container)
    assert exists(docker_client, leftover)
    old.refresh_from_db()
    assert old.log_pruned_at is None

    report = retention_prune(now=timezone.now() + LATER)
    assert [image.id for image in report.images_removed] == [leftover]
    assert not exists(docker_client, leftover)


@pytest.mark.docker
def test_candidates_of_runs_long_over_leave_the_registry_unless_a_recent_run_shares_them(
    settings: Any, tmp_path: Path
) -> None:
    settings.DOCKYARD_CANDIDATE_RETENTION_HOURS = 48
    project = make_project()
    repository = f"{REGISTRY}/{project.slug}/candidates/app"
    old, shared_old, recent = (
        finished_run(project, days_ago=3),
        finished_run(project, days_ago=3),
        finished_run(project),
    )
    with DockerEngine(settings.DOCKER_HOST) as engine:
        first = candidate(engine, tmp_path, repository, old, "one")
        second = candidate(engine, tmp_path, repository, recent, "two")
        # Another run built the very same bytes: one manifest, two tags.
        engine.push_image(
            image_id=engine.image_info(f"{repository}@{second}").id,
            repository=repository,
            tag=f"run-{shared_old.pk}",
            on_output=lambda _: None,
        )
    for run, digest in ((old, first), (shared_old, second), (recent, second)):
        LayerBuild.objects.create(
            run=run,
            name="app",
            position=0,
            role=LayerRole.APP,
            source=CacheSource.BUILT,
            image_id="sha256:x",
            reference=f"{repository}@{digest}",
            duration_seconds=1,
            size_bytes=1,
        )

    report = retention_prune()

    assert report.candidates_removed == [f"{repository}@{first}"]
    assert manifest_digest(repository, f"run-{old.pk}") is None
    assert manifest_digest(repository, f"run-{recent.pk}") == second
    assert LayerBuild.objects.get(run=old).candidate_removed_at is not None
    assert LayerBuild.objects.get(run=shared_old).candidate_removed_at is None


def candidate(
    engine: DockerEngine, tmp_path: Path, repository: str, run: PipelineRun, content: str
) -> str:
    context = tmp_path / content
    context.mkdir()
    (context / "content.txt").write_text(content)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY content.txt /content.txt\n")
    image_id = engine.build_image(
        context_dir=context,
        dockerfile=context / "Dockerfile",
        tag=f"{repository}:local",
        on_output=lambda _: None,
    )
    return engine.push_image(
        image_id=image_id, repository=repository, tag=f"run-{run.pk}", on_output=lambda _: None
    )


def test_webhook_deliveries_acted_on_long_ago_go_the_rest_stay() -> None:
    from webhooks.models import Delivery

    project = make_project()
    run = finished_run(project, days_ago=40)

    def delivery(name: str, *, days_ago: float, acted: bool = True) -> Delivery:
        made = Delivery.objects.create(
            forge="github",
            delivery_id=name,
            event="push",
            project=project,
            body=b"{}" * 1000,
            run=run if name == "old-run" else None,
            acted_at=timezone.now() if acted else None,
        )
        Delivery.objects.filter(pk=made.pk).update(
            received_at=timezone.now() - timedelta(days=days_ago)
        )
        return made

    delivery("old-run", days_ago=40)
    delivery("old-ping", days_ago=31)
    delivery("recent", days_ago=29)
    # Never acted on (its worker lost): kept whatever its age, its run is still to come.
    delivery("old-pending", days_ago=40, acted=False)

    report = retention_prune()

    assert report.deliveries_deleted == 2
    assert sorted(Delivery.objects.values_list("delivery_id", flat=True)) == [
        "old-pending",
        "recent",
    ]
    assert PipelineRun.objects.filter(pk=run.pk).exists()  # the run it started stays
