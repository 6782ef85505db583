"""In-memory stand-ins for the adapters, for fast tests of state-machine logic only.

Every behaviour that touches the engine, the registry or HAProxy is tested end to end against
the real one elsewhere; these stand in where a test is about what Dockyard decides (which step
comes next, what is recorded, what is undone), not about what the outside system does.
"""

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from infrastructure.docker_engine import (
    ContainerEngine,
    ContainerLimits,
    ContainerOutcome,
    DockerEngineError,
    ImageInfo,
    OutputSink,
)
from infrastructure.haproxy import ProxiedRequest, ProxyBackend, SlotHealth
from pipelines.execution import StageTools
from releases.models import Host
from releases.tools import DeployTools


@dataclass
class FakeContainer:
    id: str
    image: str
    name: str
    environment: dict[str, str]
    labels: dict[str, str]
    state: str = "running"


@dataclass
class FakeEngine:
    """An engine that keeps images and containers in dictionaries and records every call."""

    images: dict[str, ImageInfo] = field(default_factory=dict)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # A container whose image is in here exits at once (a release that does not start).
    crashing_images: set[str] = field(default_factory=set)
    # Names of methods that raise DockerEngineError (an engine gone away).
    failing: set[str] = field(default_factory=set)
    # A throwaway container's command (joined by spaces) -> its exit status (else 0).
    exit_codes: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what.split(" ")[0] in self.failing:
            raise DockerEngineError(f"{what}: the engine is gone")

    def build_image(
        self,
        *,
        context_dir: Path,
        dockerfile: Path,
        tag: str,
        on_output: OutputSink,
        buildargs: dict[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> str:
        self._call(f"build_image {tag}")
        image_id = f"sha256:{next(self._ids):064x}"
        self.images[tag] = self.images[image_id] = ImageInfo(image_id, 1000, ())
        return image_id

    def image_info(self, reference: str) -> ImageInfo | None:
        return self.images.get(reference)

    def image_exists(self, reference: str) -> bool:
        return reference in self.images

    def pull_image(self, *, repository: str, tag: str, on_output: OutputSink) -> None:
        self._call(f"pull_image {repository}:{tag}")

    def push_image(self, *, image_id: str, repository: str, tag: str, on_output: OutputSink) -> str:
        self._call(f"push_image {repository}:{tag}")
        return f"sha256:{next(self._ids):064x}"

    def ensure_image(self, *, reference: str, on_output: OutputSink) -> str:
        self._call(f"ensure_image {reference}")
        info = self.images.setdefault(reference, ImageInfo(f"sha256:{next(self._ids):064x}", 1, ()))
        return info.id

    def run_throwaway(
        self,
        *,
        image: str,
        command: list[str],
        labels: dict[str, str],
        timeout: int,
        limits: ContainerLimits,
        on_output: OutputSink,
        environment: dict[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> ContainerOutcome:
        shown = " ".join(command)
        self._call(f"run_throwaway {image} {shown}")
        on_output(f"ran {shown}\n")
        return ContainerOutcome(
            exit_code=self.exit_codes.get(shown, 0), timed_out=False, oom_killed=False
        )

    def start_service(
        self, *, image: str, name: str, environment: dict[str, str], labels: dict[str, str]
    ) -> str:
        self._call(f"start_service {name}")
        container_id = f"c{next(self._ids):011d}"
        state = "exited" if image in self.crashing_images else "running"
        self.containers[container_id] = FakeContainer(
            container_id, image, name, dict(environment), dict(labels), state
        )
        return container_id

    def start_container(self, container_id: str) -> None:
        self._call(f"start_container {container_id}")
        self.containers[container_id].state = "running"

    def stop_container(self, container_id: str, *, timeout: int = 10) -> None:
        self._call(f"stop_container {container_id}")
        if container_id in self.containers:
            self.containers[container_id].state = "exited"

    def remove_container(self, container_id: str) -> None:
        self._call(f"remove_container {container_id}")
        self.containers.pop(container_id, None)

    def container_state(self, container_id: str) -> str | None:
        container = self.containers.get(container_id)
        return container.state if container else None

    def container_logs(self, container_id: str, *, tail: int = 40) -> str:
        return f"logs of {container_id}\n"

    def remove_containers(self, *, labels: dict[str, str]) -> int:
        self._call("remove_containers " + ",".join(f"{k}={v}" for k, v in labels.items()))
        gone = [
            cid
            for cid, container in self.containers.items()
            if all(container.labels.get(k) == v for k, v in labels.items())
        ]
        for cid in gone:
            del self.containers[cid]
        return len(gone)

    def factory(self) -> Callable[..., AbstractContextManager[ContainerEngine]]:
        """A stand-in for DockerEngine(url): every URL gets this one engine."""

        @contextmanager
        def engine(*_: object) -> Iterator[ContainerEngine]:
            yield self

        return engine


def fake_stage_tools(engine: FakeEngine | None = None) -> StageTools:
    return StageTools(engine=(engine or FakeEngine()).factory())


@dataclass
class FakeProxy:
    """A host's proxy that keeps each backend's servers and their states in a dictionary, and
    counts a slot healthy unless its port is listed as sick."""

    # (backend, server) -> "ready" | "drain" | "maint"
    states: dict[tuple[str, str], str] = field(default_factory=dict)
    addresses: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    applied: list[list[ProxyBackend]] = field(default_factory=list)
    remembered: list[list[ProxyBackend]] = field(default_factory=list)
    # Sessions still open on a server while it drains.
    open_sessions: dict[tuple[str, str], int] = field(default_factory=dict)
    sick_ports: set[int] = field(default_factory=set)
    # (backend, server) -> the address:port being health-checked.
    checks: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    checked: list[tuple[str, int]] = field(default_factory=list)
    # What its request log holds: tests of the watch and the metrics append to it.
    logged: list[ProxiedRequest] = field(default_factory=list)
    # Request log lines it could not write.
    dropped: int = 0

    def apply(self, wanted: Callable[[], list[ProxyBackend]]) -> None:
        backends = wanted()
        self.applied.append(backends)
        for backend in backends:
            for server in backend.servers:
                key = (backend.name, server.name)
                self.addresses[key] = (server.address, server.port)
                self.states.setdefault(key, "ready" if server.enabled else "maint")

    def remember(self, wanted: Callable[[], list[ProxyBackend]]) -> None:
        self.remembered.append(wanted())

    def set_server(
        self,
        backend: str,
        server: str,
        *,
        address: str | None = None,
        port: int | None = None,
        state: str,
    ) -> None:
        if address is not None and port is not None:
            self.addresses[(backend, server)] = (address, port)
        self.states[(backend, server)] = state

    def switch(
        self,
        backend: str,
        *,
        to: Sequence[tuple[str, int]],
        address: str,
        away_from: Sequence[str],
    ) -> None:
        for server, port in to:
            self.set_server(backend, server, address=address, port=port, state="ready")
        for server in away_from:
            self.set_server(backend, server, state="drain")

    def sessions(self, backend: str, server: str) -> int:
        return self.open_sessions.get((backend, server), 0)

    def server_states(self) -> dict[tuple[str, str], str]:
        return dict(self.states)

    def health_check_start(self, backend: str, server: str, *, address: str, port: int) -> None:
        self.checks[(backend, server)] = (address, port)
        self.checked.append((address, port))

    def health(self, backend: str, server: str) -> SlotHealth:
        _, port = self.checks[(backend, server)]
        if port in self.sick_ports:
            return SlotHealth(healthy=False, detail="DOWN (L7STS 503)")
        return SlotHealth(healthy=True, detail="UP (L7OK 200)")

    def health_check_stop(self, backend: str, server: str) -> None:
        self.checks.pop((backend, server), None)

    def requests_since(self, since: datetime, until: datetime) -> list[ProxiedRequest]:
        return [request for request in self.logged if since < request.at <= until]

    def log_lines_dropped(self) -> int:
        return self.dropped


def fake_deploy_tools(
    engine: FakeEngine | None = None,
    proxy: FakeProxy | None = None,
    *,
    proxies: dict[str, FakeProxy] | None = None,
) -> DeployTools:
    """Stand-ins for every host's engine (one engine for all) and proxy: `proxy` for every
    host, or one per host name in `proxies` (made as hosts are first met)."""
    engine = engine or FakeEngine()
    if proxies is None:
        shared = proxy or FakeProxy()

        def pick(_engine: ContainerEngine, _host: Host) -> FakeProxy:
            return shared
    else:
        each = proxies

        def pick(_engine: ContainerEngine, host: Host) -> FakeProxy:
            return each.setdefault(host.name, FakeProxy())

    return DeployTools(engines=engine.factory(), proxy=pick)
