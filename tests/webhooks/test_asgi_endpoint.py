"""The webhook hot path as the web server serves it: the whole ASGI application, no Django view."""

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from config.asgi import application
from pipelines.models import PipelineRun
from tests.factories import GitRepo, fixture_bytes, github_headers, github_push_body, make_project
from webhooks.models import Delivery

# Committed data: the app closes stale connections around each delivery, as Django does
# around each request, which a test-wide transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "It's a Secret to Everybody"


def call(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    encoded = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    communicator = HttpCommunicator(application, method, path, body=body, headers=encoded)
    return async_to_sync(communicator.get_response)()


def test_a_signed_push_is_received_through_the_asgi_application(
    tmp_path: Path, runs_settle: None
) -> None:
    repo = GitRepo(tmp_path / "repo")
    sha = repo.commit("one")
    project = make_project(repository_url=repo.url, webhook_secret=SECRET)
    body = github_push_body(clone_url=repo.url, sha=sha)
    headers = {**github_headers(secret=SECRET, body=body), "Content-Type": "application/json"}

    response = call("POST", "/webhooks/github/", body, headers)

    assert response["status"] == 202
    answer = json.loads(response["body"])
    run = PipelineRun.objects.get(project=project)
    assert answer == {
        "message": f"run #1 queued for {sha[:12]}",
        "run": f"http://127.0.0.1:8000/runs/{run.pk}/",
    }
    assert Delivery.objects.get().run == run


def test_refusals_carry_their_status_and_message() -> None:
    body = fixture_bytes("github-push.json")
    response = call("POST", "/webhooks/github/", body, {"Content-Type": "application/json"})
    assert response["status"] == 400
    assert json.loads(response["body"]) == {"error": "missing header X-GitHub-Event"}


def test_a_declared_length_over_25_mb_is_refused_before_reading() -> None:
    response = call("POST", "/webhooks/gitlab/", b"{}", {"Content-Length": str(26 * 1024 * 1024)})
    assert response["status"] == 413


def test_only_post_and_only_known_forges() -> None:
    assert call("GET", "/webhooks/github/")["status"] == 405
    assert call("POST", "/webhooks/bitbucket/")["status"] == 404


def test_other_paths_still_reach_django() -> None:
    response = call("GET", "/healthz", headers={"Host": "127.0.0.1"})
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}
