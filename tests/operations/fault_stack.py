"""A Dockyard of its own for fault tests: its own Redis, registry, web and worker processes,
each of which a test may kill (SIGKILL, as the OOM killer or a power cut would) and start again.

It shares the suite's test database, Docker engine and HAProxy folder; its Redis is private,
so its tasks never reach the suite's worker, and killing it harms no other test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

import docker
import requests
from django.conf import settings

from pipelines.models import PipelineRun
from projects.models import Project
from tests.conftest import ROOT, WEB_SERVER_VENV, suite_database_url, web_server_command
from tests.factories import github_headers, github_push_body

START_TIMEOUT = 60
# Dockyard's Redis wants a password; each process of a stack finds it in its settings.
REDIS_PASSWORD = unquote(urlsplit(settings.REDIS_URL).password or "")
# Quick enough that a lost worker is noticed in seconds, slow enough that a busy one never is.
FAST_HOUSEKEEPING = {
    "DOCKYARD_HEARTBEAT_SECONDS": "0.5",
    "DOCKYARD_LOST_AFTER_SECONDS": "5",
    "DOCKYARD_REAP_INTERVAL_SECONDS": "1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """One started program, in a process group of its own so a kill takes its children."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: no clean-up handler of ours runs."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if not self.alive() or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} did not become {what}; its log ends:\n{tail}")
            time.sleep(0.1)


class FaultStack:
    def __init__(self, folder: Path, *, with_registry: bool = False, **env: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.redis_port, self.web_port = free_port(), free_port()
        self.registry_port = free_port() if with_registry else None
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": suite_database_url(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DOCKYARD_PUBLIC_URL": self.url,
            # No connection left open when the suite drops its database.
            "DOCKYARD_DB_CONN_MAX_AGE": "0",
            **FAST_HOUSEKEEPING,
            **env,
        }
        if self.registry_port:
            self.env["DOCKYARD_REGISTRY"] = self.registry
        self.redis: Process | None = None
        self.web: Process | None = None
        self.registry_process: Process | None = None
        self.workers: list[Process] = []
        self.pushed_run_ids: list[int] = []

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    # Redis ---------------------------------------------------------------------------------

    def start_redis(self) -> None:
        # As scripts/services.sh runs Redis: nothing kept on disk, so a restart loses every
        # message; and a password, the one the suite's settings give every process.
        config = self.folder / "redis.conf"
        config.write_text(
            f'port {self.redis_port}\nbind 127.0.0.1\nsave ""\nappendonly no\n'
            f"dir {self.folder}\n" + (f"requirepass {REDIS_PASSWORD}\n" if REDIS_PASSWORD else "")
        )
        self.redis = Process(
            "redis", ["redis-server", str(config)], self.env, self.folder / "redis.log"
        )
        self.redis.wait_until(lambda: self._answers(self.redis_port), "reachable")

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.start_redis()

    # Registry ------------------------------------------------------------------------------

    def start_registry(self) -> None:
        config = self.folder / "registry.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(self.folder / "registry")}},
                    "http": {"addr": self.registry},
                }
            )
        )
        self.registry_process = Process(
            "registry",
            ["docker-registry", "serve", str(config)],
            self.env,
            self.folder / "registry.log",
        )
        self.registry_process.wait_until(self._registry_answers, "reachable")

    def stop_registry(self) -> None:
        assert self.registry_process is not None
        self.registry_process.kill()

    def registry_tags(self, name: str) -> list[str]:
        answer = requests.get(f"http://{self.registry}/v2/{name}/tags/list", timeout=10)
        return answer.json().get("tags") or [] if answer.ok else []

    def _registry_answers(self) -> bool:
        try:
            return requests.get(f"http://{self.registry}/v2/", timeout=1).ok
        except requests.ConnectionError:
            return False

    # Web -----------------------------------------------------------------------------------

    def start_web(self) -> None:
        if self.web is None:
            # The pages' scripts (the live log among them) are served from the collected files.
            subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--noinput"],
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
            )
        self.web = Process(
            "web",
            web_server_command(self.web_port),
            {**self.env, **WEB_SERVER_VENV},
            self.folder / "web.log",
        )
        self.web.wait_until(self._web_answers, "healthy")

    def kill_web(self) -> None:
        assert self.web is not None
        self.web.kill()

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    # Workers -------------------------------------------------------------------------------

    def start_worker(self) -> Process:
        """A worker as `make up` runs one (two pool threads), ready for tasks."""
        name = f"fault-{uuid.uuid4().hex[:8]}@localhost"
        log = self.folder / f"worker-{name.split('@')[0]}.log"
        worker = Process(
            name,
            [
                sys.executable,
                *("-m", "celery", "-A", "config", "worker"),
                *("--concurrency", "2"),
                *("--hostname", name),
                *("--without-gossip", "--without-mingle", "--loglevel", "INFO"),
            ],
            self.env,
            log,
        )
        worker.wait_until(lambda: f"{name} ready." in log.read_text(errors="replace"), "ready")
        self.workers.append(worker)
        return worker

    def kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill()

    # Driving it ----------------------------------------------------------------------------

    def push(self, project: Project, sha: str) -> PipelineRun:
        """A signed GitHub push over HTTP to this stack's web process."""
        self.deliver(project, github_push_body(clone_url=project.repository_url, sha=sha))
        run = PipelineRun.objects.get(project=project, commit_sha=sha)
        self.pushed_run_ids.append(run.pk)
        return run

    def deliver(self, project: Project, body: bytes) -> None:
        """`body` as a signed GitHub push delivery to this stack's web process, accepted."""
        answer = requests.post(
            f"{self.url}/webhooks/github/",
            data=body,
            headers={
                "Content-Type": "application/json",
                **github_headers(secret=project.webhook_secret, body=body),
            },
            timeout=60,
        )
        assert answer.status_code == 202, answer.text

    def close(self) -> None:
        for process in [*self.workers, self.web, self.registry_process, self.redis]:
            if process is not None:
                process.stop()
        # A test may end while its run still goes on: the stopped worker never removed the
        # containers that run started.
        engine = docker.DockerClient(base_url=settings.DOCKER_HOST)
        try:
            for run_id in self.pushed_run_ids:
                for container in engine.containers.list(
                    all=True, filters={"label": f"dockyard.run={run_id}"}
                ):
                    container.remove(force=True)
        finally:
            engine.close()

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                # Up, and (with a password) asking for it first.
                return connection.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
