"""POST /webhooks/github/ with real deliveries, byte for byte, and their real headers."""

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test import Client

from pipelines.models import PipelineRun
from projects.models import Project
from tests.factories import GitRepo, fixture_bytes, github_headers, github_push_body, make_project
from webhooks.models import Delivery

SECRET = "It's a Secret to Everybody"
URL = "/webhooks/github/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def sample_app() -> Project:
    """The project of github-push.json's repository."""
    return make_project(
        slug="sample-app",
        repository_url="git@github.com:binkkatal/sample_app.git",
        webhook_secret=SECRET,
        test_command="sh test.sh",
    )


def post(client: Client, body: bytes, headers: dict[str, str], **kwargs: str) -> object:
    content_type = kwargs.pop("content_type", "application/json")
    return client.post(URL, data=body, content_type=content_type, headers=headers)


def test_a_signed_push_queues_a_run_for_its_commit(
    client: Client, sample_app: Project, django_capture_on_commit_callbacks: Callable
) -> None:
    body = fixture_bytes("github-push.json")
    headers = github_headers(secret=SECRET, body=body)
    with django_capture_on_commit_callbacks() as enqueued:
        response = post(client, body, headers)

    assert response.status_code == 202
    run = PipelineRun.objects.get(project=sample_app)
    assert (run.ref, run.commit_sha, run.status) == (
        "refs/heads/master",
        "fd489864e7642b48eaad6e3f155c10e46810ec72",
        "queued",
    )
    assert response.json()["run"].endswith(f"/runs/{run.pk}/")
    assert len(enqueued) == 1
    delivery = Delivery.objects.get()
    assert delivery.run == run
    assert bytes(delivery.body) == body
    assert delivery.outcome == "run #1 queued for fd489864e764"


def test_the_stored_headers_keep_no_signature(client: Client, sample_app: Project) -> None:
    body = fixture_bytes("github-push.json")
    post(client, body, github_headers(secret=SECRET, body=body))
    stored = {name.lower() for name in Delivery.objects.get().headers}
    assert "x-github-event" in stored
    assert not stored & {"x-hub-signature-256", "x-hub-signature", "cookie", "authorization"}


def test_a_ping_is_answered_and_starts_nothing(client: Client) -> None:
    make_project(
        repository_url="https://github.com/Octocoders/Hello-World.git", webhook_secret=SECRET
    )
    body = fixture_bytes("github-ping.json")
    response = post(client, body, github_headers(secret=SECRET, body=body, event="ping"))
    assert response.status_code == 200
    assert response.json() == {"message": "pong"}
    assert PipelineRun.objects.count() == 0
    assert Delivery.objects.get().outcome == "pong"


def test_a_bad_signature_is_refused_and_nothing_is_stored(
    client: Client, sample_app: Project
) -> None:
    body = fixture_bytes("github-push.json")
    headers = github_headers(secret="not the project's secret", body=body)
    response = post(client, body, headers)
    assert response.status_code == 401
    assert "does not match" in response.json()["error"]
    assert (Delivery.objects.count(), PipelineRun.objects.count()) == (0, 0)


def test_a_missing_signature_is_refused_and_nothing_is_stored(
    client: Client, sample_app: Project
) -> None:
    body = fixture_bytes("github-push.json")
    headers = github_headers(secret=SECRET, body=body)
    del headers["X-Hub-Signature-256"]
    response = post(client, body, headers)
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["error"]
    assert (Delivery.objects.count(), PipelineRun.objects.count()) == (0, 0)


def test_a_body_that_is_not_json_is_a_400_that_says_so(client: Client, sample_app: Project) -> None:
    body = b'{"ref": "refs/heads/master", '
    response = post(client, body, github_headers(secret=SECRET, body=body))
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed body: not JSON")


def test_a_push_without_a_ref_is_a_400_naming_it(client: Client, sample_app: Project) -> None:
    payload = json.loads(fixture_bytes("github-push.json"))
    del payload["ref"]
    body = json.dumps(payload).encode()
    response = post(client, body, github_headers(secret=SECRET, body=body))
    assert response.status_code == 400
    assert response.json()["error"] == "malformed body: push payload has no 'ref'"
    assert Delivery.objects.count() == 0


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("refs/heads/../../x", "contains '..'"),
        ("refs/heads/-fx:y", "contains ':', which git refuses in a ref name"),
        ("refs/heads/-fx", "names '-fx', which starts with '-'"),
        ("refs/tags/v1.lock", "has a component ending with '.lock' ('v1.lock')"),
    ],
)
def test_a_push_of_a_ref_git_refuses_is_a_400_naming_the_field(
    client: Client, sample_app: Project, ref: str, problem: str
) -> None:
    payload = json.loads(fixture_bytes("github-push.json"))
    payload["ref"] = ref
    body = json.dumps(payload).encode()
    response = post(client, body, github_headers(secret=SECRET, body=body))
    assert response.status_code == 400
    assert response.json()["error"] == f"malformed body: ref {ref!r} {problem}"
    assert (Delivery.objects.count(), PipelineRun.objects.count()) == (0, 0)


def test_an_unknown_repository_is_a_404_naming_it(client: Client) -> None:
    body = fixture_bytes("github-push.json")
    response = post(client, body, github_headers(secret=SECRET, body=body))
    assert response.status_code == 404
    assert response.json()["error"] == (
        "no GitHub project for repository https://github.com/binkkatal/sample_app.git"
    )


def test_a_missing_event_header_is_a_400_naming_it(client: Client, sample_app: Project) -> None:
    body = fixture_bytes("github-push.json")
    headers = github_headers(secret=SECRET, body=body)
    del headers["X-GitHub-Event"]
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "missing header X-GitHub-Event"


def test_an_unsupported_content_type_is_a_415(client: Client, sample_app: Project) -> None:
    body = fixture_bytes("github-push.json")
    response = post(client, body, github_headers(secret=SECRET, body=body), content_type="text/xml")
    assert response.status_code == 415


def test_a_form_encoded_delivery_is_understood(client: Client, sample_app: Project) -> None:
    body = urlencode({"payload": fixture_bytes("github-push.json").decode()}).encode()
    headers = github_headers(secret=SECRET, body=body)
    response = post(client, body, headers, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202
    assert PipelineRun.objects.get().commit_sha == "fd489864e7642b48eaad6e3f155c10e46810ec72"


def test_a_deleted_tag_is_recorded_and_builds_nothing(client: Client) -> None:
    make_project(
        repository_url="https://github.com/Codertocat/Hello-World.git", webhook_secret=SECRET
    )
    body = fixture_bytes("github-push-tag-delete.json")
    response = post(client, body, github_headers(secret=SECRET, body=body))
    assert response.status_code == 202
    assert response.json() == {"message": "ignored: tag 'simple-tag' was deleted"}
    assert PipelineRun.objects.count() == 0
    assert Delivery.objects.get().outcome == "ignored: tag 'simple-tag' was deleted"


def test_a_redelivery_returns_the_first_outcome_and_creates_nothing(
    client: Client, sample_app: Project
) -> None:
    body = fixture_bytes("github-push.json")
    headers = github_headers(secret=SECRET, body=body, delivery=str(uuid.uuid4()))
    first = post(client, body, headers)
    again = post(client, body, headers)
    assert again.status_code == first.status_code == 202
    assert again.json() == first.json()
    assert (Delivery.objects.count(), PipelineRun.objects.count()) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_five_concurrent_copies_of_one_delivery_make_exactly_one_run(
    tmp_path: Path, runs_settle: None
) -> None:
    # A local repository: the run this makes may really be picked up by a worker.
    repo = GitRepo(tmp_path / "repo")
    sha = repo.commit("one")
    project = make_project(repository_url=repo.url, webhook_secret=SECRET)
    body = github_push_body(clone_url=repo.url, sha=sha)
    headers = github_headers(secret=SECRET, body=body)
    barrier = threading.Barrier(5)
    answers: list[tuple[int, str]] = []

    def deliver() -> None:
        barrier.wait()
        try:
            response = post(Client(), body, headers)
            answers.append((response.status_code, response.json()["message"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [(202, f"run #1 queued for {sha[:12]}")] * 5
    assert PipelineRun.objects.filter(project=project).count() == 1
    assert Delivery.objects.count() == 1
