"""Shared fixtures: a real Celery worker process, the real registry, the real Docker engine."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from django.conf import settings
from django.test import Client

from config.celery import app as celery_app
from infrastructure.dispatch import QUEUES
from infrastructure.haproxy import PROXY_LABEL
from pipelines.models import PipelineRun
from pipelines.states import RUN_FINAL_STATES
from projects.models import Project
from tests.factories import github_headers, github_push_body

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
WORKER_START_TIMEOUT = 60
# The suite's own containers: a `make up` (or another suite) on the same engine keeps its own.
OUR_CONTAINERS = f"dockyard.managed={settings.DOCKYARD_INSTANCE}"


def suite_database_url() -> str:
    database = settings.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql", "end-to-end tests need PostgreSQL"
    return (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:"
        f"{database['PORT']}/{database['NAME']}"
    )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """A real worker process on the real broker, reading and writing the test database."""
    database_url = suite_database_url()
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    # Messages left by an earlier session (its runs are gone) would only be noise.
    with celery_app.connection_for_write() as connection:
        for queue in QUEUES:
            connection.default_channel.queue_purge(queue)
    log_path = settings.DATA_DIR / "log" / "test-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--hostname",
                name,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "DOCKYARD_DB_CONN_MAX_AGE": "0",
                # The fault tests run their own workers, whose reapers keep house; this one
                # would see their deliberately silent work and step in too.
                "DOCKYARD_HOUSEKEEPING": "false",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not celery_app.control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test worker did not start; see {log_path}")
        yield name
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _wait_until_alone_in_the_database(django_db_blocker)


@pytest.fixture
def app_containers_removed(docker_client: docker.DockerClient) -> Iterator[None]:
    """Deployed apps stop with their test: the next test's environments reuse the ports."""
    yield
    for container in docker_client.containers.list(
        all=True, sparse=True, filters={"label": ["dockyard.environment", OUR_CONTAINERS]}
    ):
        container.remove(force=True)


@pytest.fixture(scope="session", autouse=True)
def deployed_apps_removed_afterwards() -> Iterator[None]:
    """The suite's HAProxy and app containers do not outlive it."""
    yield
    try:
        client = docker.DockerClient(base_url=settings.DOCKER_HOST)
    except docker.errors.DockerException:
        return
    for kind in ("dockyard.environment", PROXY_LABEL):
        for container in client.containers.list(
            all=True, sparse=True, filters={"label": [kind, OUR_CONTAINERS]}
        ):
            container.remove(force=True)
    client.close()


@pytest.fixture
def wait_for_run() -> Callable[..., PipelineRun]:
    def wait(run: PipelineRun, timeout: float = 300) -> PipelineRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status in RUN_FINAL_STATES:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run.pk} still {run.status} after {timeout}s")

    return wait


@pytest.fixture
def push() -> Callable[..., PipelineRun]:
    """Send the project a signed GitHub push of `sha` and return the run it queued."""

    def send(project: Project, sha: str, ref: str = "refs/heads/main") -> PipelineRun:
        body = github_push_body(clone_url=project.repository_url, sha=sha, ref=ref)
        response = Client().post(
            "/webhooks/github/",
            data=body,
            content_type="application/json",
            headers=github_headers(secret=project.webhook_secret, body=body),
        )
        assert response.status_code == 202, response.content
        return PipelineRun.objects.filter(project=project, commit_sha=sha).latest("number")

    return send


@pytest.fixture
def pushed_run(
    push: Callable[..., PipelineRun], wait_for_run: Callable[..., PipelineRun]
) -> Callable[..., PipelineRun]:
    """Push, then wait for the run to end."""

    def send(project: Project, sha: str, ref: str = "refs/heads/main") -> PipelineRun:
        return wait_for_run(push(project, sha, ref))

    return send


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The raw Docker SDK, to observe what Dockyard did independently of its adapter."""
    client = docker.DockerClient(base_url=settings.DOCKER_HOST)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry_url() -> str:
    return f"http://{settings.DOCKYARD_REGISTRY}"


def registry_login() -> tuple[str, str] | None:
    """The registry's account, as Dockyard is configured with it (the registry wants one)."""
    if not settings.DOCKYARD_REGISTRY_USERNAME:
        return None
    return settings.DOCKYARD_REGISTRY_USERNAME, settings.DOCKYARD_REGISTRY_PASSWORD


def pulled(client: docker.DockerClient, reference: str) -> str:
    """`reference` made present on the engine `client` talks to (published images are tagged
    in the registry, not on any engine); returns it."""
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        login = registry_login()
        auth = {"username": login[0], "password": login[1]} if login else None
        repository, separator, rest = reference.partition("@")
        if not separator:
            repository, _, rest = reference.rpartition(":")
        client.images.pull(repository, tag=rest, auth_config=auth)
    return reference


@pytest.fixture
def registry_tags(registry_url: str) -> Callable[[str], list[str]]:
    """Ask the registry itself: GET /v2/<name>/tags/list."""

    def tags(name: str) -> list[str]:
        response = requests.get(
            f"{registry_url}/v2/{name}/tags/list", auth=registry_login(), timeout=10
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return response.json().get("tags") or []

    return tags


@pytest.fixture
def runs_settle() -> Iterator[None]:
    """For tests that queue real runs outside the docker tests: if a test worker is up, let
    it finish them before the tables are emptied under its feet."""
    yield
    if not celery_app.control.ping(timeout=0.5):
        return
    deadline = time.monotonic() + 120
    while PipelineRun.objects.exclude(status__in=RUN_FINAL_STATES).exists():
        if time.monotonic() > deadline:
            raise AssertionError("runs queued by the test never finished")
        time.sleep(0.2)


def web_server_command(port: int) -> list[str]:
    """scripts/web.sh on 127.0.0.1:`port`; run it with WEB_SERVER_VENV in its environment."""
    return [str(ROOT / "scripts" / "web.sh"), "127.0.0.1", str(port)]


# The web server from this interpreter's virtualenv, wherever the suite's clone is.
WEB_SERVER_VENV = {"DOCKYARD_VENV_BIN": str(Path(sys.executable).parent)}


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """Dockyard's web server as `make up` runs it (scripts/web.sh: HTTP and WebSocket), on the
    test database; returns its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **WEB_SERVER_VENV,
        "DATABASE_URL": suite_database_url(),
        "DOCKYARD_PUBLIC_URL": url,
        # No connection left open when the suite drops its database.
        "DOCKYARD_DB_CONN_MAX_AGE": "0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log_path = settings.DATA_DIR / "log" / "test-web.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                *web_server_command(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test web server did not start; see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        _wait_until_alone_in_the_database(django_db_blocker)


@pytest.fixture(scope="session", autouse=True)
def database_left_alone_at_the_end(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The processes tests start (webs with their connection pools, workers) are gone before
    the suite drops its database, and so are their connections."""
    yield
    _wait_until_alone_in_the_database(django_db_blocker)


def _wait_until_alone_in_the_database(django_db_blocker: Any) -> None:
    """PostgreSQL may notice a stopped process's connections a moment late; the suite cannot
    drop its database before it has."""
    from django.db import connection

    with django_db_blocker.unblock():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0] == 0:
                    return
            time.sleep(0.1)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS.exists() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOTS}")
