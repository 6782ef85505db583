"""In headless Chromium: log in, watch a run stream to success, promote to production, roll back.

Screenshots land in test-artifacts/screenshots/ (the test run prints the folder).
"""

import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from projects.models import Project
from releases.models import Deployment, Environment, Release
from tests.factories import GitRepo, make_project, web_app_repo, web_app_version
from tests.ui.conftest import PASSWORD, shot
from webhooks.signatures import github_signature

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]


def push(server: str, project: Project, repo: GitRepo, sha: str) -> str:
    """A signed GitHub push over HTTP, as GitHub would send it; returns the run's URL."""
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": repo.url},
            "head_commit": {"id": sha, "message": "change"},
        }
    ).encode()
    answer = requests.post(
        f"{server}/webhooks/github/",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(secret=project.webhook_secret, body=body),
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run"])


def wait_for_staging(release_number: int, project: Project) -> None:
    deadline = time.monotonic() + 120
    while not Deployment.objects.filter(
        environment__project=project,
        environment__name="staging",
        release__number=release_number,
        status="succeeded",
    ).exists():
        assert time.monotonic() < deadline, f"release {release_number} never reached staging"
        time.sleep(0.2)


def served(project: Project, environment: str) -> str:
    url = Environment.objects.get(project=project, name=environment).frontend_url
    return requests.get(url, timeout=5).text.strip()


def test_a_release_manager_watches_a_build_promotes_and_rolls_back_in_the_browser(
    page: Page, web_server: str, celery_worker: str, tmp_path: Path
) -> None:
    User.objects.create_user("release-manager", password=PASSWORD, is_staff=True)
    repo = web_app_repo(tmp_path / "web")
    project = make_project(slug="web", repository_url=repo.url)

    page.goto(f"{web_server}/")
    page.fill("input[name=username]", "release-manager")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")

    run_url = push(web_server, project, repo, web_app_version(repo, "v1"))
    page.goto(run_url)
    log = page.locator("#run-log")
    # The log arrives over the WebSocket while the run goes on.
    expect(log).to_contain_text("checked out", timeout=60_000)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=180_000)
    expect(log).to_contain_text("published")
    expect(page.locator('li[data-stage="publish"] .status')).to_have_text("succeeded")
    shot(page, "01-run-succeeded")

    wait_for_staging(1, project)
    production = f"{web_server}/projects/web/environments/production/"
    promote(page, production, release=1)
    assert served(project, "production") == "v1"

    push(web_server, project, repo, web_app_version(repo, "v2"))
    wait_for_staging(2, project)
    promote(page, production, release=2)
    assert served(project, "production") == "v2"

    page.goto(production)
    page.click("#rollback")
    confirmation = page.locator("#confirmation")
    expect(confirmation).to_contain_text("from release 2 to release 1")
    expect(confirmation).to_contain_text(Release.objects.get(project=project, number=1).image)
    shot(page, "04-rollback-confirmation")
    page.click("#confirm")
    expect(page.locator("#current-release")).to_have_text("release 1", timeout=60_000)
    expect(page.locator("tr.deployment-succeeded").first).to_contain_text("Rollback")
    shot(page, "05-rolled-back")
    assert served(project, "production") == "v1"


def promote(page: Page, environment_url: str, *, release: int) -> None:
    page.goto(environment_url)
    page.click("#promote")
    page.select_option("#release", str(release))
    page.click("#review")
    expect(page.locator("#confirmation")).to_contain_text(f"to release {release}")
    shot(page, f"02-promote-release-{release}-confirmation")
    page.click("#confirm")
    # The page follows the deployment live and settles on its outcome.
    expect(page.locator("#current-release")).to_have_text(f"release {release}", timeout=60_000)
    shot(page, f"03-promoted-release-{release}")


def test_the_browser_hands_deployed_apps_none_of_the_uis_cookies(
    page: Page, web_server: str
) -> None:
    """Cookies are per host, not per port: apps listen on DOCKYARD_APP_ADDRESS, another host."""
    User.objects.create_user("ada", password=PASSWORD)
    page.goto(f"{web_server}/")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")
    app = f"http://{settings.DOCKYARD_APP_ADDRESS}:{urlsplit(web_server).port}/"
    same_host_other_port = web_server.replace(str(urlsplit(web_server).port), "9100")

    ui_cookies = {cookie["name"] for cookie in page.context.cookies(web_server)}
    assert {"sessionid", "csrftoken"} <= ui_cookies
    # What the browser would send an app on the UI's host (the trap), and on the apps' host.
    assert {c["name"] for c in page.context.cookies(same_host_other_port)} == ui_cookies
    assert page.context.cookies(app) == []
