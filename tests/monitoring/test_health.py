"""/healthz, /healthz/worker and `manage.py workerhealth`: answers for machines, fast and true."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

from tests.conftest import WEB_SERVER_VENV, web_server_command

ROOT = Path(__file__).resolve().parents[2]
# Nothing listens on port 1 of the loopback: connecting is refused at once.
NOWHERE = "redis://127.0.0.1:1/0"


def redis_database_nobody_uses() -> str:
    """REDIS_URL for a database of our Redis where no client, so no worker, is connected.

    Celery's broadcasts (the ping) are scoped to the database (kombu's fanout prefix), so a
    ping there reaches no worker of this or any other test session.
    """
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        in_use = {int(connection["db"]) for connection in client.client_list()}
        databases = int(client.config_get("databases").get("databases", 16))
    finally:
        client.close()
    free = next(db for db in reversed(range(databases)) if db not in in_use)
    # The same server (and password) as the suite's, another database.
    return urlsplit(settings.REDIS_URL)._replace(path=f"/{free}").geturl()


def test_healthz_answers_ok_when_the_database_and_redis_answer(client: Client, db: None) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@override_settings(REDIS_URL=NOWHERE)
def test_healthz_names_redis_when_it_does_not_answer(client: Client, db: None) -> None:
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], list(body["failed"])) == ("unavailable", ["redis"])
    assert "127.0.0.1:1" in body["failed"]["redis"]


def test_the_worker_check_lists_the_workers_that_answered(
    client: Client, celery_worker: str
) -> None:
    response = client.get("/healthz/worker")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert celery_worker in response.json()["workers"]


def test_workerhealth_exits_0_naming_the_worker_that_answered(
    celery_worker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("workerhealth", "--destination", celery_worker, "--timeout", "2")
    assert capsys.readouterr().out.strip() == celery_worker


def workerhealth(*, redis_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "workerhealth", "--timeout", "0.5"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workerhealth_exits_1_when_no_worker_answers() -> None:
    completed = workerhealth(redis_url=redis_database_nobody_uses())
    assert completed.returncode == 1
    assert "no worker answered within 0.5s" in completed.stderr


def test_workerhealth_fails_fast_when_the_broker_does_not_answer() -> None:
    started = time.monotonic()
    completed = workerhealth(redis_url=NOWHERE)
    # Celery alone would retry the connection for several seconds; the check does not.
    assert time.monotonic() - started < 5
    assert completed.returncode == 1
    assert "redis: Error 111 connecting to 127.0.0.1:1" in completed.stderr


@pytest.fixture(scope="module")
def stranded_web_server() -> Iterator[str]:
    """Dockyard's web process with no database to reach and no worker on its broker."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        **WEB_SERVER_VENV,
        "DATABASE_URL": "postgres://dockyard:dockyard@127.0.0.1:5432/dockyard_no_such_database",
        "REDIS_URL": redis_database_nobody_uses(),
        "DOCKYARD_DB_CONN_MAX_AGE": "0",
    }
    process = subprocess.Popen(
        web_server_command(port),
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the web server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_healthz_names_the_database_when_it_cannot_be_reached(stranded_web_server: str) -> None:
    response = requests.get(f"{stranded_web_server}/healthz", timeout=10)
    assert response.status_code == 503
    failed = response.json()["failed"]
    assert list(failed) == ["database"]
    assert "dockyard_no_such_database" in failed["database"]


def test_the_worker_check_answers_503_when_no_worker_answers(stranded_web_server: str) -> None:
    response = requests.get(f"{stranded_web_server}/healthz/worker", timeout=10)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "failed": {"workers": "no worker answered"},
    }
