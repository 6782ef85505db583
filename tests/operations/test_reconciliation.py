"""Start-up reconciliation: a worker starting removes the containers of work that is over and
leaves alone what may still be needed, or is not this installation's."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from django.conf import settings

from operations.reconciliation import startup_reconcile
from pipelines.models import PipelineRun
from pipelines.states import RunStatus
from releases.states import DeploymentStatus
from tests.factories import (
    BUSYBOX,
    make_environment,
    make_project,
    make_release,
    make_run,
    make_succeeded_deployment,
)
from tests.operations.fault_stack import FaultStack

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def idle_image(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("idle-image")
    (context / "busybox").write_bytes(BUSYBOX.read_bytes())
    (context / "busybox").chmod(0o755)
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sleep", "600"]\n'
    )
    image, _ = docker_client.images.build(path=str(context), tag="dockyard-test/idle:latest")
    return str(image.id)


@pytest.fixture
def containers(docker_client: docker.DockerClient, idle_image: str) -> Iterator[dict[str, str]]:
    """Name -> id of the containers a test makes; all removed afterwards."""
    made: dict[str, str] = {}
    yield made
    for container_id in made.values():
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(container_id).remove(force=True)


def start(
    docker_client: docker.DockerClient,
    image: str,
    made: dict[str, str],
    name: str,
    labels: dict[str, str],
    *,
    instance: str | None = None,
) -> None:
    container = docker_client.containers.run(
        image,
        detach=True,
        network_mode="none",
        labels={**labels, "dockyard.managed": instance or settings.DOCKYARD_INSTANCE},
    )
    made[name] = container.id


def remaining(docker_client: docker.DockerClient, made: dict[str, str]) -> set[str]:
    left = set()
    for name, container_id in made.items():
        try:
            docker_client.containers.get(container_id)
        except docker.errors.NotFound:
            continue
        left.add(name)
    return left


def run_with_status(status: str) -> PipelineRun:
    run = make_run(make_project())
    PipelineRun.objects.filter(pk=run.pk).update(status=status)
    return run


def test_containers_of_finished_or_unknown_work_go_those_of_live_work_stay(
    docker_client: docker.DockerClient, idle_image: str, containers: dict[str, str]
) -> None:
    finished = run_with_status(RunStatus.SUCCEEDED)
    running = run_with_status(RunStatus.RUNNING)
    project = make_project()
    staging = make_environment(project, "staging")
    kept = make_succeeded_deployment(staging, make_release(project, 1))
    failed = make_succeeded_deployment(staging, make_release(project, 2))
    failed.status = DeploymentStatus.FAILED
    failed.save(update_fields=["status"])
    for name, labels in {
        "finished run's test": {"dockyard.run": str(finished.pk)},
        "unknown run's test": {"dockyard.run": "999999"},
        "running run's test": {"dockyard.run": str(running.pk)},
        "failed deployment's app": {"dockyard.deployment": str(failed.pk)},
        "kept deployment's app": {"dockyard.deployment": str(kept.pk)},
    }.items():
        start(docker_client, idle_image, containers, name, labels)
    start(
        docker_client,
        idle_image,
        containers,
        "another installation's",
        {"dockyard.run": str(finished.pk)},
        instance="someone-else",
    )

    report = startup_reconcile()

    assert remaining(docker_client, containers) == {
        "running run's test",
        "kept deployment's app",
        "another installation's",
    }
    assert len(report.containers_removed) == 3


def test_a_worker_reconciles_as_it_starts(
    docker_client: docker.DockerClient,
    idle_image: str,
    containers: dict[str, str],
    tmp_path: Path,
) -> None:
    finished = run_with_status(RunStatus.FAILED)
    start(docker_client, idle_image, containers, "left over", {"dockyard.run": str(finished.pk)})
    stack = FaultStack(tmp_path / "stack")
    try:
        stack.start_redis()
        stack.start_worker()
        assert remaining(docker_client, containers) == set()
    finally:
        stack.close()
