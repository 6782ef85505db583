"""The REST API without a pipeline behind it: access, idempotency, errors, chat-ops, Slack."""

import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from api.models import ChatIdentity
from api.serializers import ChatCommandSerializer
from api.tokens import api_token_issue
from pipelines.models import PipelineRun
from pipelines.services import run_create
from projects.models import Project
from tests.factories import make_project

pytestmark = pytest.mark.django_db

SHA = "c" * 40
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ops", is_staff=True)


@pytest.fixture
def viewer() -> User:
    return User.objects.create_user("viewer")


@pytest.fixture
def project() -> Project:
    return make_project(slug="web")


def test_the_api_needs_a_token(project: Project) -> None:
    response = APIClient().get("/api/v1/projects/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_viewer_reads_but_may_not_write(viewer: User, project: Project) -> None:
    api = client_for(viewer)
    assert [p["slug"] for p in api.get("/api/v1/projects/").json()["results"]] == ["web"]
    refused = api.post("/api/v1/runs/", {"project": "web", "ref": "main"}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"code": "permission_denied", "message": "only operators may start runs"}
    }
    assert api.post("/api/v1/projects/web/rotate-secret/").status_code == 403
    assert not PipelineRun.objects.exists()


def test_an_operator_adds_a_project_and_sees_its_secret_once(operator: User) -> None:
    api = client_for(operator)
    response = api.post(
        "/api/v1/projects/",
        {"slug": "api-app", "repository_url": "https://github.com/acme/api-app.git"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["webhook_url"] == "http://127.0.0.1:8000/webhooks/github/"
    assert body["webhook_secret"] == Project.objects.get(slug="api-app").webhook_secret
    assert "webhook_secret" not in api.get("/api/v1/projects/api-app/").json()


def test_bad_input_is_a_4xx_naming_the_field(operator: User) -> None:
    api = client_for(operator)
    missing = api.post("/api/v1/projects/", {"slug": "x"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid"
    assert "repository_url" in missing.json()["error"]["fields"]
    refused = api.post(
        "/api/v1/projects/",
        {"slug": "x", "repository_url": "--upload-pack=/tmp/evil"},
        format="json",
    )
    assert refused.status_code == 400
    assert "starts with '-'" in refused.json()["error"]["message"]
    assert api.get("/api/v1/runs/?project=web").status_code == 200
    assert api.get("/api/v1/runs/1/log/?after=minus").status_code == 404
    assert api.get("/api/v1/runs/999/").status_code == 404


def test_a_write_retried_with_the_same_key_happens_once(operator: User, project: Project) -> None:
    api = client_for(operator)
    key = str(uuid.uuid4())
    body = {"project": "web", "ref": "main", "commit_sha": SHA}
    first = api.post("/api/v1/runs/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = api.post("/api/v1/runs/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert PipelineRun.objects.count() == 1


def test_a_key_reused_for_another_request_is_refused(operator: User, project: Project) -> None:
    api = client_for(operator)
    key = str(uuid.uuid4())
    api.post(
        "/api/v1/runs/",
        {"project": "web", "ref": "main", "commit_sha": SHA},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    reused = api.post(
        "/api/v1/runs/",
        {"project": "web", "ref": "main", "commit_sha": "d" * 40},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert PipelineRun.objects.count() == 1


def test_cancel_and_retry_through_the_api(operator: User, project: Project) -> None:
    run = run_create(project=project, ref="refs/heads/main", commit_sha=SHA, trigger="webhook")
    api = client_for(operator)
    cancelled = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    retried = api.post(f"/api/v1/runs/{run.pk}/retry/")
    assert retried.status_code == 201
    assert (retried.json()["number"], retried.json()["commit_sha"]) == (2, SHA)


def test_the_log_is_read_from_a_sequence_number_on(operator: User, project: Project) -> None:
    from pipelines.stage_log import StageLog

    run = run_create(project=project, ref="refs/heads/main", commit_sha=SHA, trigger="webhook")
    log = StageLog(run.stages.get(name="checkout"))
    for line in ("one", "two", "three"):
        log.line(line)
        log.flush()
    api = client_for(operator)
    everything = api.get(f"/api/v1/runs/{run.pk}/log/").json()
    assert [chunk["text"] for chunk in everything["chunks"]] == ["one\n", "two\n", "three\n"]
    after_first = api.get(f"/api/v1/runs/{run.pk}/log/?after={everything['chunks'][0]['seq']}")
    assert [chunk["text"] for chunk in after_first.json()["chunks"]] == ["two\n", "three\n"]
    assert after_first.json()["next_after"] == everything["next_after"]


def test_the_openapi_schema_is_served(viewer: User) -> None:
    schema = client_for(viewer).get("/api/v1/schema/?format=json").json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/environments/{id}/promote/" in schema["paths"]


def test_chatops_answers_help_status_and_unknown_commands(viewer: User, project: Project) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha=SHA, trigger="webhook")
    api = client_for(viewer)
    assert (
        "deploy <project> <release> to <environment>"
        in (api.post("/api/v1/chatops/", {"text": "help"}, format="json").json()["text"])
    )
    status = api.post("/api/v1/chatops/", {"text": "status web"}, format="json").json()["text"]
    assert status.startswith("web #1 queued — main cccccccccccc")
    assert "http://127.0.0.1:8000/runs/" in status
    unknown = api.post("/api/v1/chatops/", {"text": "frobnicate web"}, format="json")
    assert unknown.status_code == 200
    assert unknown.json()["text"].startswith('unknown command "frobnicate"')
    assert "Dockyard commands:" in unknown.json()["text"]
    nothing = api.post("/api/v1/chatops/", {"text": "status nope"}, format="json").json()
    assert nothing["text"] == "refused: no project 'nope'"


def test_chatops_refuses_a_deploy_the_user_may_not_make(viewer: User, project: Project) -> None:
    answer = client_for(viewer).post(
        "/api/v1/chatops/", {"text": "rollback web production"}, format="json"
    )
    assert answer.json()["text"] == "refused: web has no environment 'production'"


def slack_post(body: bytes, *, secret: str = SLACK_SECRET, age: int = 0) -> object:
    timestamp = str(int(time.time()) - age)
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return APIClient().post(
        "/api/v1/chatops/slack/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
        HTTP_X_SLACK_SIGNATURE="v0=" + digest.hexdigest(),
    )


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SECRET)
def test_a_signed_slack_command_is_answered_in_the_channel(project: Project) -> None:
    body = urlencode({"command": "/dockyard", "text": "status web", "user_id": "U1"}).encode()
    response = slack_post(body)
    assert response.status_code == 200
    assert response.json()["response_type"] == "in_channel"
    assert response.json()["text"].startswith("web has no runs yet")


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SECRET)
def test_a_slack_command_signed_with_another_secret_is_refused(project: Project) -> None:
    body = urlencode({"text": "status web", "user_id": "U1"}).encode()
    response = slack_post(body, secret="not-the-signing-secret")
    assert response.status_code == 401
    assert "bad signature" in response.json()["text"]


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SECRET)
def test_a_replayed_slack_command_older_than_five_minutes_is_refused(project: Project) -> None:
    body = urlencode({"text": "status web", "user_id": "U1"}).encode()
    response = slack_post(body, age=301)
    assert response.status_code == 401
    assert "stale timestamp" in response.json()["text"]


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SECRET)
def test_a_slack_user_acts_only_with_the_rights_of_their_linked_user(project: Project) -> None:
    ChatIdentity.objects.create(user=User.objects.create_user("intern"), external_id="U2")
    body = urlencode({"text": "deploy web 1 to staging", "user_id": "U2"}).encode()
    response = slack_post(body)
    assert response.status_code == 200
    assert response.json() == {
        "response_type": "ephemeral",
        "text": "refused: web has no environment 'staging'",
    }


def test_a_nul_character_in_a_filter_is_a_400_not_a_crash(viewer: User) -> None:
    response = client_for(viewer).get("/api/v1/runs/?project=web%00")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"project": ["must not contain NUL characters"]}


def test_a_text_longer_than_its_limit_is_refused_even_when_trimming_would_make_it_fit() -> None:
    text = "\n" + "x" * 500  # 501 characters as sent; 500 once trimmed

    serializer = ChatCommandSerializer(data={"text": text})

    assert not serializer.is_valid()
    assert "no more than 500 characters" in str(serializer.errors["text"][0])
