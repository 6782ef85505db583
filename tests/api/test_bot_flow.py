"""A bot runs the whole release flow through the API alone: trigger, follow, promote, roll back."""

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from projects.models import Project
from tests.factories import web_app_repo, web_app_version
from tests.recording_server import recording_server
from webhooks.models import NotificationEndpoint

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]


class Bot:
    def __init__(self, token: str) -> None:
        self.api = APIClient()
        self.api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = getattr(self.api, method)(f"/api/v1/{path}", body or {}, format="json")
        assert response.status_code < 300, (path, response.status_code, response.content)
        return response.json()

    def until(self, path: str, field: str, done: set[str], timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("get", path)
            if state[field] in done:
                return state
            time.sleep(0.2)
        raise AssertionError(f"{path} never reached {done}")

    def run(self, ref: str) -> Any:
        run = self.call("post", "runs/", {"project": "shop", "ref": ref})
        return self.until(f"runs/{run['id']}/", "status", {"succeeded", "failed", "cancelled"})

    def environment(self, name: str, timeout: float = 120) -> Any:
        # Environments appear with the first release, a moment after its run ends.
        deadline = time.monotonic() + timeout
        while True:
            environments = self.call("get", "environments/?project=shop")["results"]
            found = [e for e in environments if e["name"] == name]
            if found or time.monotonic() > deadline:
                return found[0]
            time.sleep(0.2)

    def staged(self, release: int, timeout: float = 120) -> Any:
        """Staging once its auto-deployment of `release` has succeeded (drained, not only
        switched): only then may the release be promoted."""
        deadline = time.monotonic() + timeout
        while True:
            staging = self.environment("staging")
            history = self.call("get", f"environments/{staging['id']}/history/")["results"]
            if any(d["release"] == release and d["status"] == "succeeded" for d in history):
                return staging
            assert time.monotonic() < deadline, f"release {release} never reached staging"
            time.sleep(0.2)

    def deployment(self, answer: Any) -> Any:
        return self.until(f"deployments/{answer['id']}/", "status", {"succeeded", "failed"})


def served(environment: Any) -> str:
    return requests.get(environment["url"], timeout=5).text.strip()


def test_a_bot_builds_promotes_and_rolls_back_through_the_api_alone(
    tmp_path: Path, celery_worker: str
) -> None:
    repo = web_app_repo(tmp_path / "shop")
    web_app_version(repo, "v1")
    user = User.objects.create_user("release-bot", is_staff=True)
    bot = Bot(api_token_issue(user=user))

    created = bot.call("post", "projects/", {"slug": "shop", "repository_url": repo.url})
    assert created["slug"] == "shop"

    first = bot.run("main")
    assert first["status"] == "succeeded", first["failure_reason"]
    log = bot.call("get", f"runs/{first['id']}/log/")
    assert any("checked out" in chunk["text"] for chunk in log["chunks"])

    staging = bot.staged(1)
    assert served(staging) == "v1"

    production = bot.environment("production")
    promotion = bot.deployment(bot.call("post", f"environments/{production['id']}/promote/"))
    assert promotion["status"] == "succeeded", promotion["failure_reason"]
    assert served(production) == "v1"

    web_app_version(repo, "v2")
    assert bot.run("main")["status"] == "succeeded"
    bot.staged(2)
    promotion = bot.deployment(
        bot.call("post", f"environments/{production['id']}/promote/", {"release": 2})
    )
    assert (promotion["status"], promotion["previous_release"]) == ("succeeded", 1)
    assert served(production) == "v2"

    rollback = bot.deployment(bot.call("post", f"environments/{production['id']}/rollback/"))
    assert (rollback["kind"], rollback["release"], rollback["status"]) == (
        "rollback",
        1,
        "succeeded",
    )
    assert served(production) == "v1"
    history = bot.call("get", f"environments/{production['id']}/history/")["results"]
    assert [(d["kind"], d["release"]) for d in history] == [
        ("rollback", 1),
        ("promote", 2),
        ("promote", 1),
    ]


def test_chat_hears_of_finished_runs_and_deployments(tmp_path: Path, celery_worker: str) -> None:
    repo = web_app_repo(tmp_path / "shop")
    web_app_version(repo, "v1")
    user = User.objects.create_user("release-bot", is_staff=True)
    bot = Bot(api_token_issue(user=user))
    bot.call("post", "projects/", {"slug": "shop", "repository_url": repo.url})

    with recording_server() as chat, recording_server(failures=1000) as broken_chat:
        project = Project.objects.get(slug="shop")
        NotificationEndpoint.objects.create(project=project, url=chat.url + "/hooks/ops")
        NotificationEndpoint.objects.create(project=project, url=broken_chat.url + "/hooks/down")
        run = bot.run("main")
        assert run["status"] == "succeeded"
        deadline = time.monotonic() + 120
        while len(chat.accepted()) < 2:
            assert time.monotonic() < deadline, [c.body for c in chat.calls]
            time.sleep(0.2)

    texts = [call.body["text"] for call in chat.accepted()]
    assert any(text.startswith("✅ shop #1 succeeded") for text in texts)
    assert any("shop staging deployed to release 1 by dockyard" in text for text in texts)
    events = {call.body["dockyard"]["event"] for call in chat.accepted()}
    assert events == {"run.finished", "deployment.finished"}
    # The endpoint that is down was tried (and will be retried) without holding anything up.
    assert broken_chat.calls
