"""Hostile deliveries against the web process as `make up` runs it: each is refused with a
clear status, nothing is stored for it, and the server goes on serving honest ones."""

import json
import socket
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
import requests

from pipelines.models import PipelineRun
from tests.factories import github_headers, github_push_body, make_project
from webhooks.models import Delivery

# runs_settle: the honest push's run, if the suite's worker is up, ends before the tables go.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("runs_settle")]

CLOSED = 0


def post(server: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{server}/webhooks/github/", data=body, headers=headers, timeout=30)


def hostile_deliveries(secret: str, clone_url: str) -> dict[str, Callable[[str], int]]:
    honest = github_push_body(clone_url=clone_url, sha="a" * 40)

    def send(body: bytes, **extra: str) -> Callable[[str], int]:
        headers = {
            "Content-Type": "application/json",
            **github_headers(secret=secret, body=body),
            **extra,
        }

        def answer(server: str) -> int:
            try:
                return post(server, body, headers).status_code
            except requests.ConnectionError:
                # A server may hang up on a header over its limit instead of answering it.
                return CLOSED

        return answer

    def forged(server: str) -> int:
        headers = {
            "Content-Type": "application/json",
            **github_headers(secret="guess", body=honest),
        }
        return post(server, honest, headers).status_code

    nested = b"[" * 200_000 + b"]" * 200_000
    return {
        "forged signature": forged,
        "signature of the wrong length": send(honest, **{"X-Hub-Signature-256": "sha256=00"}),
        "deeply nested JSON": send(nested),
        "not UTF-8": send(b'{"ref": "\xff\xfe"}'),
        "a JSON string, not an object": send(json.dumps("push").encode()),
        "a huge header": send(honest, **{"X-Padding": "x" * 60_000}),
        "an event name that is a path": send(honest, **{"X-GitHub-Event": "../../etc/passwd"}),
        "a delivery id of 10 kB": send(honest, **{"X-GitHub-Delivery": "d" * 10_000}),
    }


def test_hostile_deliveries_are_refused_and_the_server_keeps_serving(web_server: str) -> None:
    project = make_project(repository_url=f"https://github.com/acme/{uuid.uuid4().hex}.git")

    statuses = {
        name: send(web_server)
        for name, send in hostile_deliveries(project.webhook_secret, project.repository_url).items()
    }

    # Refused (4xx) or, for what is well-formed but means nothing to us, ignored (202 with no
    # run): never a 5xx, never a run.
    assert all(400 <= status < 500 or status in {202, CLOSED} for status in statuses.values()), (
        statuses
    )
    assert statuses["forged signature"] in {401, 403}, statuses
    assert statuses["deeply nested JSON"] == 400, statuses
    # Signed and well-formed, but with 60 kB of headers no forge sends: refused all the same.
    assert statuses["a huge header"] in {431, CLOSED}, statuses
    assert not PipelineRun.objects.filter(project=project).exists()
    assert requests.get(f"{web_server}/healthz", timeout=5).json()["status"] == "ok"
    body = github_push_body(clone_url=project.repository_url, sha="b" * 40)
    honest = post(
        web_server,
        body,
        {
            "Content-Type": "application/json",
            **github_headers(secret=project.webhook_secret, body=body),
        },
    )
    assert honest.status_code == 202, honest.text
    assert Delivery.objects.filter(project=project, run__isnull=False).count() == 1


def test_a_request_head_that_keeps_coming_is_cut_off_after_16_kb(web_server: str) -> None:
    # A header line that never ends, arriving a piece at a time as a slow client sends it:
    # the server must not hold it all waiting for its end.
    address = urlsplit(web_server)
    client = socket.create_connection((address.hostname, address.port), timeout=30)
    sent = 0
    with client:
        try:
            client.sendall(b"POST /webhooks/github/ HTTP/1.1\r\nHost: dockyard\r\nX-Padding: ")
            while sent < 2**20:
                client.sendall(b"x" * 4096)
                sent += 4096
                time.sleep(0.005)  # separate reads on the server's side
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := client.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert sent < 2**20, "the server read a megabyte of one header line"
    # Refused, or hung up on (the refusal can be lost when the client is still sending).
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert requests.get(f"{web_server}/healthz", timeout=5).json()["status"] == "ok"
