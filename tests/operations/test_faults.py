"""Faults with real processes: workers killed mid-build and mid-deploy, Redis restarted, the
registry down during a push, HAProxy killed. Each run or deployment ends in exactly one final
state within a bounded time, nothing is left behind, and the proxy serves what the database
says.
"""

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings
from django.utils import timezone
from docker.models.containers import Container

from infrastructure.docker_engine import DockerEngine
from infrastructure.haproxy import HostHAProxy, proxy_container_name
from operations.reaper import lost_work_reap
from pipelines.models import PipelineRun, RunEvent, Stage
from pipelines.selectors import stage_log_text
from pipelines.states import RUN_FINAL_STATES, RunStatus, StageStatus
from projects.models import Project
from releases.models import Deployment, Environment, HostDeployment
from releases.services import local_host
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentStatus, HostStatus, other_slot
from tests.factories import BUSYBOX_DOCKERFILE, GitRepo, busybox_app_repo, make_project
from tests.operations.fault_stack import FaultStack
from tests.recording_server import recording_server
from webhooks.models import CommitStatusReport

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]

# Lost after 5 s of silence, reaped within 1 s, a new worker up in a few: well inside this.
SETTLE_TIMEOUT = 180


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path / "stack")
    stack.start_redis()
    stack.start_web()
    yield stack
    stack.close()


def wait_until(check: Callable[[], object], what: str, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def stage(run: PipelineRun, name: str) -> Stage:
    return Stage.objects.get(run=run, name=name)


def settled(run: PipelineRun) -> PipelineRun:
    wait_until(
        lambda: PipelineRun.objects.get(pk=run.pk).status in RUN_FINAL_STATES,
        f"run {run.pk} ends",
    )
    run.refresh_from_db()
    return run


def final_moves(run: PipelineRun) -> list[str]:
    """Every move of the run itself into a final state: exactly one, whatever happened."""
    return list(
        RunEvent.objects.filter(
            run=run, stage__isnull=True, to_status__in=RUN_FINAL_STATES
        ).values_list("to_status", flat=True)
    )


def containers_of(docker_client: docker.DockerClient, label: str) -> list[Container]:
    return docker_client.containers.list(all=True, sparse=True, filters={"label": label})


def slow_build_repo(path: Path) -> GitRepo:
    repo = busybox_app_repo(path)
    # A build step that takes long enough to be interrupted, never in the engine's cache.
    repo.write(
        "Dockerfile", BUSYBOX_DOCKERFILE + f"RUN sleep 6 && echo slow step {uuid.uuid4()} done\n"
    )
    return repo


def test_a_worker_killed_mid_build_is_replaced_and_the_run_succeeds_on_its_second_attempt(
    stack: FaultStack, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = slow_build_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="true")
    first_worker = stack.start_worker()
    run = stack.push(project, repo.commit("slow build"))
    wait_until(
        lambda: "sleep 6" in stage_log_text(stage(run, "build")),
        "the build reaches its slow step",
    )

    first_worker.kill()
    assert stage(run, "build").status == StageStatus.RUNNING  # nobody has settled it yet
    stack.start_worker()
    run = settled(run)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert final_moves(run) == [RunStatus.SUCCEEDED]
    build = stage(run, "build")
    assert build.attempts == 2
    assert build.events.filter(reason__contains="stopped answering").exists()
    wait_until(lambda: not containers_of(docker_client, f"dockyard.run={run.pk}"), "no container")


def test_a_stage_that_loses_its_worker_twice_fails_with_the_reason_and_leaves_no_container(
    stack: FaultStack, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="sleep 600")
    stack.start_worker()
    run = stack.push(project, repo.commit("a test that hangs"))

    earlier_attempts: set[str] = set()

    def this_attempts_containers() -> set[str]:
        # The second attempt sweeps the first one's container once it starts: only a container
        # not seen before proves that the attempt got as far as its test.
        ids = {c.id for c in containers_of(docker_client, f"dockyard.run={run.pk}")}
        return ids - earlier_attempts

    for attempt in (1, 2):

        def attempt_runs_its_test(attempt: int = attempt) -> bool:
            return stage(run, "test").attempts == attempt and bool(this_attempts_containers())

        wait_until(attempt_runs_its_test, f"attempt {attempt} of the test stage runs its container")
        stack.kill_workers()
        # The test container outlives its worker; the next attempt or the clean-up removes it.
        left_behind = this_attempts_containers()
        assert left_behind
        earlier_attempts |= left_behind
        stack.start_worker()
    run = settled(run)

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "test"
    assert "stopped answering" in run.failure_reason
    assert "lost 2 times, not trying again" in run.failure_reason
    assert final_moves(run) == [RunStatus.FAILED]
    wait_until(
        lambda: not containers_of(docker_client, f"dockyard.run={run.pk}"),
        "the hanging test container is removed",
        timeout=60,
    )


def test_a_run_queued_while_redis_restarts_is_sent_again_and_succeeds(
    stack: FaultStack, tmp_path: Path
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="true")
    # No worker yet: the run's first task waits in Redis, which then loses it.
    run = stack.push(project, repo.commit("queued"))
    stack.restart_redis()
    stack.start_worker()
    run = settled(run)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert final_moves(run) == [RunStatus.SUCCEEDED]
    assert stage(run, "checkout").events.filter(reason__contains="sent again").exists()


def test_a_run_whose_stage_is_running_when_redis_restarts_still_succeeds(
    stack: FaultStack, tmp_path: Path
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="sleep 4")
    stack.start_worker()
    run = stack.push(project, repo.commit("redis goes away mid-test"))
    wait_until(lambda: stage(run, "test").status == StageStatus.RUNNING, "the test stage runs")

    stack.restart_redis()
    run = settled(run)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert final_moves(run) == [RunStatus.SUCCEEDED]
    assert stage(run, "test").attempts == 1


def test_a_commit_status_lost_with_its_worker_and_redis_reaches_the_forge_once_it_is_back(
    stack: FaultStack, tmp_path: Path
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="true")
    # The forge answers 503 until it is told otherwise.
    with recording_server(failures=1_000_000) as forge:
        Project.objects.filter(pk=project.pk).update(
            forge_api_url=forge.url, forge_token="forge-token-123", forge_repository="acme/web"
        )
        stack.start_worker()
        run = settled(stack.push(project, repo.commit("reported while the forge is down")))
        assert run.status == RunStatus.SUCCEEDED, run.failure_reason
        wait_until(
            lambda: any(call.body.get("state") == "success" for call in forge.calls),
            "the success report is tried and waits for its retry",
        )

        # The retries lived in the worker and in Redis: both go.
        stack.kill_workers()
        stack.restart_redis()
        forge.failures_left = 0
        stack.start_worker()
        wait_until(lambda: forge.accepted(), "the forge is told at last")
        # Older states are not worth sending once a newer one is told.
        time.sleep(3)

    assert [call.body["state"] for call in forge.accepted()] == ["success"]
    assert forge.accepted()[0].path == f"/repos/acme/web/statuses/{run.commit_sha}"
    report = CommitStatusReport.objects.get(run=run)
    assert report.last_state == "success"
    assert report.last_event_id == RunEvent.objects.filter(run=run, stage=None).latest("pk").pk


@pytest.fixture
def registry_stack(tmp_path: Path) -> Iterator[FaultStack]:
    stack = FaultStack(
        tmp_path / "stack",
        with_registry=True,
        DOCKYARD_PUSH_ATTEMPTS="3",
        DOCKYARD_PUSH_BACKOFF_SECONDS="1",
    )
    stack.start_redis()
    stack.start_registry()
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


def test_a_push_to_a_registry_that_stays_down_is_retried_then_fails_clearly(
    registry_stack: FaultStack, tmp_path: Path
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="sleep 2")
    run = registry_stack.push(project, repo.commit("nowhere to push"))
    # The candidate is pushed beside the test; the registry goes away after it.
    wait_until(lambda: "app: candidate " in stage_log_text(stage(run, "test")), "the candidate")

    registry_stack.stop_registry()
    run = settled(run)

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "publish"
    assert "is unreachable; gave up after 3 attempts" in run.failure_reason
    log = stage_log_text(stage(run, "publish"))
    assert "retrying in 1s (attempt 2 of 3)" in log
    assert "retrying in 2s (attempt 3 of 3)" in log


def test_a_push_to_a_registry_that_comes_back_succeeds_after_a_retry(
    registry_stack: FaultStack, tmp_path: Path
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command="sleep 2")
    sha = repo.commit("the registry restarts")
    run = registry_stack.push(project, sha)
    # The candidate is pushed beside the test; the registry goes away after it.
    wait_until(lambda: "app: candidate " in stage_log_text(stage(run, "test")), "the candidate")

    registry_stack.stop_registry()
    wait_until(lambda: "retrying in" in stage_log_text(stage(run, "publish")), "a push retry")
    registry_stack.start_registry()
    run = settled(run)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert sha in registry_stack.registry_tags(project.slug)


SLOW_START_APP_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www/ /app/www/
# Takes a few seconds to answer its health check: long enough to lose a worker meanwhile.
CMD ["sh", "-c", "sleep 4; exec httpd -f -p ${HOST}:${PORT} -h /app/www"]
"""
STAGING_ONLY_SPEC = """\
images:
  app: {}
deploy:
  port: 8000
  health: /healthz
  environments:
    staging: {auto: true, branches: [main]}
"""


def slow_start_app(path: Path, version: str) -> tuple[GitRepo, str]:
    repo = busybox_app_repo(path)
    repo.write("Dockerfile", SLOW_START_APP_DOCKERFILE)
    repo.write("dockyard.yml", STAGING_ONLY_SPEC)
    repo.write("www/index.html", f"{version}\n")
    repo.write("www/healthz", "ok\n")
    return repo, repo.commit(version)


def served_by(environment: Environment) -> str:
    try:
        answer = requests.get(environment.frontend_url, timeout=2)
    except requests.ConnectionError:
        return "(nothing listens)"
    return answer.text.strip() if answer.ok else f"(HTTP {answer.status_code})"


def deployment_of(project: Project) -> Deployment:
    wait_until(
        lambda: Deployment.objects.filter(environment__project=project).exists(),
        "a deployment is queued",
    )
    return Deployment.objects.get(environment__project=project)


def test_a_worker_killed_mid_deploy_is_replaced_and_the_deployment_finishes_once(
    stack: FaultStack, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo, sha = slow_start_app(tmp_path / "app", "v1")
    project = make_project(repository_url=repo.url)
    stack.start_worker()
    stack.push(project, sha)
    deployment = deployment_of(project)
    wait_until(
        lambda: HostDeployment.objects.filter(
            deployment=deployment, status=HostStatus.CHECKING
        ).exists(),
        "the host's part waits for the new container's health check",
    )

    stack.kill_workers()
    stack.start_worker()
    wait_until(
        lambda: Deployment.objects.get(pk=deployment.pk).status in DEPLOYMENT_FINAL_STATES,
        "the deployment ends",
    )

    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.failure_reason
    [target] = deployment.host_deployments.all()
    assert target.attempts == 2
    assert deployment.events.filter(host=target.host, detail__contains="resuming it").exists()
    assert deployment.events.filter(to_status=DeploymentStatus.SUCCEEDED).count() == 1
    staging = Environment.objects.get(project=project, name="staging")
    assert served_by(staging) == "v1"
    # One container for the deployment: the resumed attempt checked the one already started.
    assert len(containers_of(docker_client, f"dockyard.deployment={deployment.pk}")) == 1


def deployed_app(stack: FaultStack, tmp_path: Path) -> Environment:
    repo, sha = slow_start_app(tmp_path / "app", "v1")
    project = make_project(repository_url=repo.url)
    stack.start_worker()
    stack.push(project, sha)
    deployment = deployment_of(project)
    wait_until(
        lambda: Deployment.objects.get(pk=deployment.pk).status in DEPLOYMENT_FINAL_STATES,
        "the deployment ends",
    )
    staging = Environment.objects.get(project=project, name="staging")
    assert served_by(staging) == "v1"
    return staging


@contextmanager
def local_proxy() -> Iterator[HostHAProxy]:
    """The local host's HAProxy, as the suite's deploy worker drives it."""
    with DockerEngine(settings.DOCKER_HOST) as engine:
        yield HostHAProxy(engine, host=local_host().name)


def test_haproxy_killed_is_started_again_serving_the_live_release(
    stack: FaultStack, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    staging = deployed_app(stack, tmp_path)
    proxy = docker_client.containers.get(proxy_container_name("local"))
    started = proxy.attrs["State"]["StartedAt"]

    # The HAProxy master killed on the host (out of memory, say): its container ends.
    os.kill(proxy.attrs["State"]["Pid"], signal.SIGKILL)

    wait_until(
        lambda: (
            docker_client.containers.get(proxy_container_name("local")).attrs["State"]["StartedAt"]
            != started
            and served_by(staging) == "v1"
        ),
        "HAProxy runs again, serving the live release",
        timeout=60,
    )


def test_haproxy_removed_is_made_again_as_the_database_says(
    stack: FaultStack, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    staging = deployed_app(stack, tmp_path)

    docker_client.containers.get(proxy_container_name("local")).remove(force=True)
    assert served_by(staging) == "(nothing listens)"

    wait_until(
        lambda: served_by(staging) == "v1",
        "the housekeeper makes the proxy again, serving the live release",
        timeout=60,
    )


def test_a_proxy_server_state_changed_by_hand_is_put_back_as_the_database_says(
    stack: FaultStack, tmp_path: Path
) -> None:
    staging = deployed_app(stack, tmp_path)
    with local_proxy() as haproxy:
        haproxy.set_server(staging.proxy_backend, staging.live_slot, state="maint")
        assert served_by(staging) == "(HTTP 503)"

        wait_until(lambda: served_by(staging) == "v1", "the live slot is ready again", timeout=60)
        states = haproxy.server_states()
    assert states[(staging.proxy_backend, staging.live_slot)] == "ready"


def test_a_deployment_abandoned_between_two_proxy_commands_leaves_the_proxy_as_the_database_says(
    stack: FaultStack, tmp_path: Path
) -> None:
    staging = deployed_app(stack, tmp_path)
    stack.kill_workers()
    live, idle = staging.live_slot, other_slot(staging.live_slot)
    first = Deployment.objects.get(environment=staging)
    # A second deployment whose host job's worker died for the last time in the middle of
    # the switch: the idle slot already set ready, the live one draining, the database not
    # yet told.
    stuck = Deployment.objects.create(
        environment=staging,
        release=first.release,
        kind="deploy",
        status=DeploymentStatus.ROLLING,
        slot=idle,
    )
    stuck_host = HostDeployment.objects.create(
        deployment=stuck,
        host=local_host(),
        position=0,
        batch=0,
        status=HostStatus.SWITCHING,
        attempts=2,
        task_id="lost",
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )
    with local_proxy() as haproxy:
        haproxy.set_server(
            staging.proxy_backend,
            idle,
            address=local_host().address,
            port=staging.slot_port(idle),
            state="ready",
        )
        haproxy.set_server(staging.proxy_backend, live, state="drain")

    report = lost_work_reap()

    assert report.host_deployments_abandoned == [stuck_host.pk]
    # The host's job failed; the deployment reverts (its coordinator's task, on the worker
    # started again), which puts the host's proxy back.
    stack.start_worker()
    wait_until(
        lambda: Deployment.objects.get(pk=stuck.pk).status in DEPLOYMENT_FINAL_STATES,
        "the deployment ends",
    )
    stuck.refresh_from_db()
    assert stuck.status == DeploymentStatus.FAILED
    assert "lost 2 times" in stuck.failure_reason
    with local_proxy() as haproxy:
        states = haproxy.server_states()
    assert states[(staging.proxy_backend, live)] == "ready"
    assert states[(staging.proxy_backend, idle)] == "maint"
    assert served_by(staging) == "v1"
