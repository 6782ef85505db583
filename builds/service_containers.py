"""A test's services (its database, its cache) and the network namespace it shares with them.

A holder container keeps a namespace with nothing but a loopback; the services and the test's
containers join it, so the test reaches `db` at 127.0.0.1:5432 (each service's name is an
/etc/hosts entry for 127.0.0.1), nothing outside reaches them, and they reach nothing outside:
no bridge network is made. Services run under the test's limits and labels, are waited on
until their `ready` command succeeds, and go with the holder when the test is over, pass or
fail (the run's sweep by label catches any a lost worker left).
"""

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from builds.build_log import BuildLog
from builds.errors import BuildCancelled, BuildFailure
from infrastructure.docker_engine import ContainerEngine, ContainerLimits, DockerEngineError
from projects.spec import ServiceSpec

READY_POLL_SECONDS = 0.5
SERVICE_LOG_LINES = 30


@dataclass(frozen=True)
class TestNamespace:
    """Where the test's containers run: the holder's id, to join with ContainerLimits."""

    __test__ = False  # not a test case, for pytest

    holder_id: str
    services: dict[str, str]


@contextmanager
def services_running(
    *,
    engine: ContainerEngine,
    services: tuple[ServiceSpec, ...],
    images: Mapping[str, str],
    labels: dict[str, str],
    log: BuildLog,
) -> Iterator[TestNamespace]:
    """Start the namespace and every service, wait until each is ready, and yield; remove
    them all afterwards, whatever happened. `images` gives the image of each service (an image
    of the stack already built, or a reference already on the engine)."""
    hosts = {service.name: "127.0.0.1" for service in services}
    holder_id = engine.namespace_holder_start(
        labels={**labels, "dockyard.role": "netns"}, hosts=hosts
    )
    started: dict[str, str] = {}
    try:
        for service in services:
            log.line(f"service {service.name}: starting {service.image}")
            started[service.name] = engine.sidecar_start(
                image=images[service.name],
                command=list(service.command) if service.command is not None else None,
                environment=dict(service.env),
                labels={**labels, "dockyard.role": "service", "dockyard.service": service.name},
                limits=ContainerLimits(
                    memory_bytes=service.memory_bytes,
                    pids=service.pids,
                    nano_cpus=int(service.cpus * 1_000_000_000),
                    user=service.user,
                    network_of=holder_id,
                ),
            )
        for service in services:
            _wait_until_ready(engine, service, started[service.name], log)
        yield TestNamespace(holder_id=holder_id, services=started)
    finally:
        for container_id in [*started.values(), holder_id]:
            try:
                engine.remove_container(container_id)
            except DockerEngineError as error:
                log.line(f"could not remove container {container_id[:12]}: {error}")


def _wait_until_ready(
    engine: ContainerEngine, service: ServiceSpec, container_id: str, log: BuildLog
) -> None:
    deadline = time.monotonic() + service.ready_timeout
    while True:
        state = engine.container_state(container_id)
        if state != "running":
            raise BuildFailure(
                _not_ready(engine, service, container_id, f"it {state or 'vanished'}")
            )
        if service.ready is None:
            log.line(f"service {service.name}: running")
            return
        code, _ = engine.exec_run(container_id, list(service.ready))
        if code == 0:
            log.line(f"service {service.name}: ready")
            return
        if time.monotonic() > deadline:
            raise BuildFailure(
                _not_ready(
                    engine,
                    service,
                    container_id,
                    f"`{' '.join(service.ready)}` did not succeed within {service.ready_timeout}s",
                )
            )
        if log.stop_requested.wait(READY_POLL_SECONDS):
            raise BuildCancelled()


def _not_ready(engine: ContainerEngine, service: ServiceSpec, container_id: str, why: str) -> str:
    last = engine.container_logs(container_id, tail=SERVICE_LOG_LINES).rstrip()
    return f"service {service.name} never became ready: {why}; its last lines:\n{last}"
