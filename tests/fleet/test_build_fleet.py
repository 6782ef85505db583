"""A build fleet of three workers on three hosts (tests/fleet/conftest.py): what one stage
built is what the next, on another host, runs and publishes; the base cache is shared through
the registry; every host is left clean; a lost worker loses nothing; the installation's chores
run on one worker at a time; an upstream image that moves rebuilds exactly its users."""

import itertools
import re
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
from django.conf import settings
from django.test import Client
from docker.models.containers import Container

from builds.models import CacheSource, LayerBuild, LayerRole, UpstreamMove
from infrastructure.haproxy import PROXY_LABEL
from operations.models import ChoreRecord
from operations.upstream_watch import upstream_check
from pipelines.models import PipelineRun, Stage, TestStep, Trigger
from pipelines.states import RunStatus, StageStatus
from projects.models import Project
from tests.conftest import registry_login
from tests.factories import BUSYBOX, GitRepo, make_project, stack_repo
from tests.fleet.conftest import Fleet, registry_digest

pytestmark = [
    pytest.mark.docker,
    pytest.mark.fleet,
    pytest.mark.django_db(transaction=True),
]


def stage_reaches(run: PipelineRun, name: str, status: str, timeout: float = 180) -> Stage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stage = Stage.objects.get(run=run, name=name)
        if stage.status == status:
            return stage
        run.refresh_from_db()
        assert run.status not in {"failed", "cancelled"}, (run.status, run.failure_reason)
        time.sleep(0.1)
    raise AssertionError(f"stage {name} of run {run.pk} never became {status}")


def carried_by(fleet: Fleet, stage: Stage) -> str:
    """Which fleet worker carried the stage (its node name is in Stage.worker)."""
    for name, worker in fleet.workers.items():
        if stage.worker.startswith(f"{worker.hostname}:"):
            return name
    raise AssertionError(f"stage {stage.name} was carried by {stage.worker!r}, not the fleet")


def created_at(container: Container) -> datetime:
    # Docker writes nanoseconds; Python reads microseconds.
    text = container.attrs["Created"].rstrip("Z")
    return datetime.fromisoformat(text[:26]).replace(tzinfo=UTC)


def has_image(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_stages_forced_onto_three_workers_publish_exactly_the_digest_they_tested(
    fleet: Fleet,
    tmp_path: Path,
    push: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
) -> None:
    repo = stack_repo(tmp_path / "repo", test_script="sleep 2\necho tested\n")
    project = make_project(repository_url=repo.url)

    fleet.only("w1")  # checkout, config and build on w1 (its engine over its socket)
    run = push(project, repo.commit("first"))
    stage_reaches(run, "build", StageStatus.RUNNING)
    fleet.only("w2")  # the test on w2 (TCP with TLS)
    stage_reaches(run, "test", StageStatus.RUNNING)
    fleet.only("w3")  # publishing on w3 (ssh)
    run = wait_for_run(run)
    fleet.everyone()

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    stages = {stage.name: stage for stage in run.stages.all()}
    assert [carried_by(fleet, stages[name]) for name in ("build", "test", "publish")] == [
        "w1",
        "w2",
        "w3",
    ]
    app = LayerBuild.objects.get(run=run, name="app")
    candidate = app.reference
    assert "/candidates/app@sha256:" in candidate
    # The test ran the candidate, the registry publishes the same digest under the sha tag.
    assert TestStep.objects.get(run=run).image == candidate
    candidate_digest = candidate.partition("@")[2]
    assert run.image_digest == candidate_digest
    assert registry_digest(run.image_repository, run.commit_sha) == candidate_digest
    # w2 pulled the candidate and built nothing; w3 needed no layer to publish.
    assert has_image(fleet.engine("w2"), candidate)
    assert not has_image(fleet.engine("w2"), f"dockyard/{project.slug}/app:run-{run.pk}")
    assert has_image(fleet.engine("w1"), f"dockyard/{project.slug}/app:run-{run.pk}")
    assert not has_image(fleet.engine("w3"), candidate)
    # The build's records stand as the build wrote them.
    assert LayerBuild.objects.filter(run=run).count() == 2
    assert fleet.engine("w1").images.get(candidate).id == app.image_id


def test_a_base_built_on_one_worker_is_a_cache_hit_on_the_other_two(
    fleet: Fleet,
    tmp_path: Path,
    pushed_run: Callable[..., PipelineRun],
) -> None:
    repo = stack_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)
    runs = []
    for name in ("w1", "w2", "w3"):
        fleet.only(name)
        repo.write("app/version.txt", f"{name}\n")
        runs.append(pushed_run(project, repo.commit(f"on {name}")))
    fleet.everyone()

    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 3, [
        run.failure_reason for run in runs
    ]
    bases = [LayerBuild.objects.get(run=run, name="base") for run in runs]
    assert [base.source for base in bases] == [
        CacheSource.BUILT,
        CacheSource.REGISTRY,
        CacheSource.REGISTRY,
    ]
    assert len({base.reference for base in bases}) == 1
    for name in ("w2", "w3"):
        assert has_image(fleet.engine(name), bases[0].reference)


def test_after_runs_no_workspace_or_container_of_theirs_remains_on_any_host(
    fleet: Fleet,
    tmp_path: Path,
    push: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
) -> None:
    repo = stack_repo(tmp_path / "repo", test_script="sleep 2\necho ok\n")
    project = make_project(repository_url=repo.url)
    fleet.only("w1")
    run = push(project, repo.commit("spread over hosts"))
    stage_reaches(run, "build", StageStatus.RUNNING)
    fleet.only("w2")
    stage_reaches(run, "test", StageStatus.RUNNING)
    fleet.everyone()
    run = wait_for_run(run)
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    # w1 checked the commit out and built it; whichever worker took the clean-up, each host's
    # housekeeper sweeps its own disk and engine.

    deadline = time.monotonic() + 60
    while True:
        left = {
            name: [
                *(p.name for p in worker.workspaces.glob(f"run-{run.pk}")),
                *(
                    c.name
                    for c in fleet.engine(name).containers.list(
                        all=True, filters={"label": f"dockyard.run={run.pk}"}
                    )
                ),
            ]
            for name, worker in fleet.workers.items()
        }
        if not any(left.values()):
            break
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(0.5)


def test_a_worker_killed_mid_stage_loses_nothing_another_takes_the_stage_again(
    fleet: Fleet,
    tmp_path: Path,
    push: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
) -> None:
    repo = stack_repo(tmp_path / "repo", test_script="echo started\nsleep 6\necho finished\n")
    project = make_project(repository_url=repo.url)
    fleet.only("w1")
    run = push(project, repo.commit("long test"))
    test_stage = stage_reaches(run, "test", StageStatus.RUNNING)
    assert carried_by(fleet, test_stage) == "w1"
    fleet.only("w2", "w3")
    time.sleep(1)
    fleet.kill("w1")
    try:
        run = wait_for_run(run, timeout=240)
    finally:
        fleet.start("w1")
        fleet.everyone()

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    test_stage = Stage.objects.get(run=run, name="test")
    assert test_stage.attempts == 2
    assert carried_by(fleet, test_stage) in {"w2", "w3"}
    reasons = [event.reason for event in run.events.filter(stage=test_stage)]
    assert any("starting it again" in reason for reason in reasons), reasons


def housekeeping_spans(log: Path, chore: str, since: datetime) -> list[tuple[datetime, datetime]]:
    """(began, ended) of each run of `chore` in a worker's log after `since`."""
    spans, began = [], None
    # Celery's format: "[2026-11-30 16:04:07,085: INFO/MainProcess] housekeeping: ..."
    pattern = re.compile(r"^\[(\S+ \S+): INFO/MainProcess\] housekeeping: (.+) (began|ended)$")
    for line in log.read_text(errors="replace").splitlines():
        found = pattern.match(line)
        if not found or found.group(2) != chore:
            continue
        at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if at < since:
            continue
        if found.group(3) == "began":
            began = at
        elif began is not None:
            spans.append((began, at))
            began = None
    return spans


def test_the_reaper_runs_on_one_worker_at_a_time_and_build_workers_never_start_haproxy(
    fleet: Fleet,
) -> None:
    since = datetime.now()
    time.sleep(8)  # the workers reap every second

    spans = sorted(
        span
        for worker in fleet.workers.values()
        for span in housekeeping_spans(worker.log_path, "reap runs", since)
    )
    assert len(spans) >= 3, "the reaper hardly ran"
    for (_, ended), (began, _) in itertools.pairwise(spans):
        assert began >= ended, "two workers reaped at once"
    record = ChoreRecord.objects.get(name="reap runs")
    assert record.last_worker.split(":")[0] in {w.hostname for w in fleet.workers.values()}
    # Build workers: no HAProxy of theirs, no deployment reaping, no proxy chore.
    for worker in fleet.workers.values():
        proxies = fleet.engine(worker.name).containers.list(
            all=True, filters={"label": PROXY_LABEL}
        )
        assert [p.name for p in proxies if created_at(p) >= since.astimezone(UTC)] == []
        assert housekeeping_spans(worker.log_path, "reap deployments", since) == []
        assert housekeeping_spans(worker.log_path, "keep the proxies", since) == []


UPSTREAM_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
RUN echo "{version}" > /etc/openssl-version
"""
ON_UPSTREAM_BASE = """\
FROM {reference}
ONBUILD COPY app/ /app/
"""


def upstream_push(tmp_path: Path, reference: str, version: str) -> str:
    """Build an image and push it as `reference` with the raw tools; its digest."""
    context = tmp_path / f"upstream-{version}"
    context.mkdir()
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(UPSTREAM_DOCKERFILE.format(version=version))
    client = docker.DockerClient(base_url=settings.DOCKER_HOST)
    try:
        client.images.build(path=str(context), tag=reference, rm=True)
        login = registry_login()
        auth = {"username": login[0], "password": login[1]} if login else None
        repository, _, tag = reference.rpartition(":")
        client.images.push(repository, tag=tag, auth_config=auth)
    finally:
        client.close()
    return registry_digest(repository, tag)


def project_on(tmp_path: Path, name: str, reference: str | None) -> tuple[GitRepo, Project]:
    repo = stack_repo(tmp_path / name)
    if reference is not None:
        repo.write("docker/base.Dockerfile", ON_UPSTREAM_BASE.format(reference=reference))
    return repo, make_project(repository_url=repo.url)


def test_an_upstream_tag_that_moves_rebuilds_exactly_its_users_and_the_api_lists_them(
    fleet: Fleet,
    tmp_path: Path,
    pushed_run: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
    admin_client: Client,
) -> None:
    reference = f"{settings.DOCKYARD_REGISTRY}/infra-{uuid.uuid4().hex[:8]}/base:12"
    old = upstream_push(tmp_path, reference, "3.0.1")
    users = [project_on(tmp_path, f"user-{n}", reference) for n in range(2)]
    bystander = project_on(tmp_path, "bystander", None)
    first = {}
    for repo, project in [*users, bystander]:
        run = pushed_run(project, repo.commit("first"))
        assert run.status == RunStatus.SUCCEEDED, run.failure_reason
        first[project.slug] = run
    assert upstream_check().moved == {}

    new = upstream_push(tmp_path, reference, "3.0.2")
    assert new != old
    report = upstream_check()

    user_slugs = sorted(project.slug for _, project in users)
    assert report.moved == {reference: user_slugs}
    move = UpstreamMove.objects.get(reference=reference)
    assert (move.old_digest, move.new_digest) == (old, new)
    rebuilt = [wait_for_run(run) for run in move.runs.order_by("project__slug")]
    assert [run.project.slug for run in rebuilt] == user_slugs
    for run in rebuilt:
        assert run.status == RunStatus.SUCCEEDED, run.failure_reason
        assert run.trigger == Trigger.UPSTREAM_MOVED
        base = LayerBuild.objects.get(run=run, role=LayerRole.BASE)
        assert (base.source, base.upstream) == (CacheSource.BUILT, {reference: new})
    assert (
        not PipelineRun.objects.filter(project=bystander[1])
        .exclude(pk=first[bystander[1].slug].pk)
        .exists()
    )
    # Asked again, nothing moved: no second wave.
    assert upstream_check().moved == {}

    now = admin_client.get("/api/v1/images/", {"base": reference}).json()
    assert sorted(p["slug"] for p in now["projects"]) == user_slugs
    assert all(p["current"] for p in now["projects"])
    before = admin_client.get("/api/v1/images/", {"base": old}).json()
    assert sorted(p["slug"] for p in before["projects"]) == user_slugs
    assert not any(p["current"] for p in before["projects"])
    assert [p["runs"] for p in before["projects"]] == [[first[slug].number] for slug in user_slugs]
    refused = admin_client.get("/api/v1/images/", {"base": "not a reference"})
    assert refused.status_code == 400
    assert "base" in refused.json()["error"]["message"]
