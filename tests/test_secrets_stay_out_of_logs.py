"""No secret, token or signature reaches a log line, across webhooks, the API, Slack and
notifications, whether the request was accepted or refused."""

import hashlib
import hmac
import logging
import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from projects.services import project_create, project_secret_set
from tests.factories import github_headers, github_push_body
from tests.recording_server import recording_server
from webhooks.models import NotificationEndpoint
from webhooks.tasks import notify

pytestmark = pytest.mark.django_db

SLACK_SIGNING_SECRET = "slack-signing-secret-0123456789ab"
FORGE_TOKEN = "ghp_forge_token_never_logged_0123"
NPM_TOKEN = "npm_secret_never_logged_0123"
NOTIFICATION_PATH_SECRET = "XXslackpathsecretXX"
SHA = "b" * 40


def slack_headers(body: bytes, secret: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET)
def test_secrets_tokens_and_signatures_never_appear_in_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    operator = User.objects.create_user("ops", is_staff=True)
    token = api_token_issue(user=operator)
    api = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    never_logged = [token, SLACK_SIGNING_SECRET, FORGE_TOKEN, NPM_TOKEN, NOTIFICATION_PATH_SECRET]

    # The API: a project is made (its answer carries the webhook secret), its secret rotated,
    # and a wrong token tried.
    created = api.post(
        "/api/v1/projects/",
        {"slug": "web", "repository_url": "https://github.com/acme/web.git"},
        format="json",
    )
    assert created.status_code == 201, created.content
    first_secret = created.json()["webhook_secret"]
    rotated = api.post("/api/v1/projects/web/rotate-secret/")
    webhook_secret = rotated.json()["webhook_secret"]
    wrong_token = token[::-1]
    assert (
        APIClient(HTTP_AUTHORIZATION=f"Token {wrong_token}").get("/api/v1/projects/").status_code
        == 401
    )
    never_logged += [first_secret, webhook_secret, wrong_token]

    # Webhooks: a signed delivery, one signed with the old secret, a GitLab token guessed.
    body = github_push_body(clone_url="https://github.com/acme/web.git", sha=SHA)
    good = github_headers(secret=webhook_secret, body=body)
    stale = github_headers(secret=first_secret, body=body)
    for headers, status in ((good, 202), (stale, 401)):
        response = Client().post(
            "/webhooks/github/", data=body, content_type="application/json", headers=headers
        )
        assert response.status_code == status, response.content
    never_logged += [good["X-Hub-Signature-256"], stale["X-Hub-Signature-256"]]

    # Slack: a signed command and a forged one.
    form = urlencode({"command": "/dockyard", "text": "status web", "user_id": "U1"}).encode()
    for secret, status in ((SLACK_SIGNING_SECRET, 200), ("a-forged-signing-secret", 401)):
        headers = slack_headers(form, secret)
        response = APIClient().post(
            "/api/v1/chatops/slack/",
            data=form,
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
        assert response.status_code == status
        never_logged.append(headers["X-Slack-Signature"])

    # A project with a forge token and a test secret; a notification endpoint that is down.
    other = project_create(
        slug="api",
        repository_url="https://github.com/acme/api.git",
        forge_token=FORGE_TOKEN,
    )
    project_secret_set(project=other, name="NPM_TOKEN", value=NPM_TOKEN)
    endpoint = NotificationEndpoint.objects.create(
        project=other, url=f"http://127.0.0.1:1/services/T0/B0/{NOTIFICATION_PATH_SECRET}"
    )
    # Run as the worker runs it (eagerly here): every retry is logged with its error.
    notify.apply(args=[endpoint.pk, {"text": "run finished"}])
    with recording_server() as chat:
        working = NotificationEndpoint.objects.create(
            project=other, url=f"{chat.url}/services/T0/B1/{NOTIFICATION_PATH_SECRET}"
        )
        notify.apply(args=[working.pk, {"text": "run finished"}])
        assert len(chat.accepted()) == 1

    logged = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert "queued" in logged and "127.0.0.1:1" in logged, "the log is there, without secrets"
    for value in never_logged:
        assert value not in logged
    for signature in (good["X-Hub-Signature-256"], stale["X-Hub-Signature-256"]):
        assert signature.removeprefix("sha256=") not in logged
