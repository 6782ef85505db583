"""A fleet on this machine: three hosts (scripts/hosts.sh: an engine and an sshd each on
127.0.0.2-4) and three real Celery workers, one per host, each with its own data folder,
sharing the suite's PostgreSQL, Redis and registry. Each worker reaches its engine another
way, as workers on other machines would: w1 on the host's socket, w2 over TCP with TLS
client certificates, w3 over ssh.

The suite's own worker (tests/conftest.py) is told to stop consuming while these run, and
these stop at the end of the package: their housekeepers must not reap the rest of the
suite's deliberately silent work.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings

from config.celery import app as celery_app
from infrastructure.dispatch import QUEUES

ROOT = Path(__file__).resolve().parents[2]
HOSTS_DIR = Path("/var/lib/dockyard/hosts")
CLIENT_HOME = HOSTS_DIR / "client"
START_TIMEOUT = 90
# How each worker reaches its host's engine.
ENGINES = {
    "w1": "unix:///run/dockyard/hosts/127.0.0.2/docker.sock",
    "w2": "tcp://127.0.0.3:2376",
    "w3": "ssh://dockyard-remote@127.0.0.4",
}
# The same engines as the test observes them (always the local socket: independent of the
# transport under test).
SOCKETS = {
    "w1": "unix:///run/dockyard/hosts/127.0.0.2/docker.sock",
    "w2": "unix:///run/dockyard/hosts/127.0.0.3/docker.sock",
    "w3": "unix:///run/dockyard/hosts/127.0.0.4/docker.sock",
}


@dataclass
class FleetWorker:
    name: str
    hostname: str
    data_dir: Path
    log_path: Path
    engine_url: str
    roles: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def workspaces(self) -> Path:
        return self.data_dir / "workspaces"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Fleet:
    workers: dict[str, FleetWorker]
    database_url: str
    clients: dict[str, docker.DockerClient] = field(default_factory=dict)

    def engine(self, name: str) -> docker.DockerClient:
        """The raw Docker SDK on worker `name`'s host engine."""
        if name not in self.clients:
            self.clients[name] = docker.DockerClient(base_url=SOCKETS[name])
        return self.clients[name]

    def only(self, *names: str) -> None:
        """From now on only the workers `names` take build work (the others stop consuming
        the builds queue; a task they already took, they finish)."""
        for worker in self.workers.values():
            if worker.name in names:
                celery_app.control.add_consumer(
                    "builds", destination=[worker.hostname], reply=True, timeout=5
                )
            else:
                celery_app.control.cancel_consumer(
                    "builds", destination=[worker.hostname], reply=True, timeout=5
                )

    def everyone(self) -> None:
        self.only(*self.workers)

    def start(self, name: str) -> None:
        worker = self.workers[name]
        worker.data_dir.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DOCKYARD_DB_CONN_MAX_AGE": "0",
            "DOCKER_HOST": worker.engine_url,
            # The ssh and TLS set-up scripts/hosts.sh made, where docker's tools look for it.
            "HOME": str(CLIENT_HOME),
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(CLIENT_HOME / ".docker"),
            "DOCKYARD_DATA_DIR": str(worker.data_dir),
            # One installation: the same label on every host's containers.
            "DOCKYARD_INSTANCE": settings.DOCKYARD_INSTANCE,
            "DOCKYARD_WORKER_ROLES": worker.roles,
            # Each stage through the broker, so that a test can move a run from host to host.
            "DOCKYARD_STAGES_ON_ONE_WORKER": "false",
            "DOCKYARD_HOUSEKEEPING": "true",
            "DOCKYARD_REAP_INTERVAL_SECONDS": "1",
            "DOCKYARD_HEARTBEAT_SECONDS": "1",
            "DOCKYARD_LOST_AFTER_SECONDS": "8",
            "DOCKYARD_UPSTREAM_CHECK_SECONDS": "0",
            # The deploy workers read the hosts' request logs (each read an ssh connection).
            "DOCKYARD_TRAFFIC_SAMPLE_SECONDS": "2",
            "DOCKYARD_LOG_LEVEL": "INFO",
        }
        worker.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(worker.log_path, "ab") as log:
            worker.process = subprocess.Popen(
                [
                    sys.executable,
                    # A pool thread runs the task while the worker still answers remote
                    # control (Fleet.only); one at a time, as the fleet tests reason.
                    *("-m", "celery", "-A", "config", "worker"),
                    "--concurrency=1",
                    *("--hostname", worker.hostname, "--without-gossip", "--without-mingle"),
                    *("--loglevel", "INFO"),
                ],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not celery_app.control.ping(destination=[worker.hostname], timeout=0.5):
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fleet worker {name} did not start; see {worker.log_path}")

    def kill(self, name: str) -> None:
        """SIGKILL: the worker is gone mid-whatever, as when its machine dies."""
        worker = self.workers[name]
        assert worker.process is not None
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

    def stop(self, name: str) -> None:
        worker = self.workers[name]
        if not worker.alive():
            return
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait()


def registry_digest(repository: str, tag: str) -> str:
    """The digest the registry has for repository:tag (asked over its API, with its login)."""
    from tests.conftest import registry_login

    name = repository.partition("/")[2]
    response = requests.head(
        f"http://{settings.DOCKYARD_REGISTRY}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=registry_login(),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.headers["Docker-Content-Digest"])


def hosts_up() -> None:
    subprocess.run([str(ROOT / "scripts" / "hosts.sh"), "up"], check=True, capture_output=True)


@pytest.fixture(scope="package")
def fleet(django_db_setup: None, django_db_blocker: object) -> Iterator[Fleet]:
    from tests.conftest import _wait_until_alone_in_the_database, suite_database_url

    hosts_up()
    others = [
        name
        for reply in celery_app.control.ping(timeout=1)
        for name in reply
        if not name.startswith("fleet-")
    ]
    for queue in QUEUES:
        for name in others:
            celery_app.control.cancel_consumer(queue, destination=[name], reply=True, timeout=5)
    run_id = uuid.uuid4().hex[:6]
    base = settings.DATA_DIR / "fleet"
    workers = {
        name: FleetWorker(
            name=name,
            hostname=f"fleet-{name}-{run_id}@localhost",
            data_dir=base / name,
            log_path=settings.DATA_DIR / "log" / f"fleet-{name}.log",
            engine_url=ENGINES[name],
            roles="build",
        )
        for name in ENGINES
    }
    fleet = Fleet(workers=workers, database_url=suite_database_url())
    try:
        for name in workers:
            fleet.start(name)
        yield fleet
    finally:
        for name in workers:
            fleet.stop(name)
        for client in fleet.clients.values():
            client.close()
        for queue in QUEUES:
            for name in others:
                celery_app.control.add_consumer(queue, destination=[name], reply=True, timeout=5)
        _wait_until_alone_in_the_database(django_db_blocker)
