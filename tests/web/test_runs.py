"""The web pages, without a pipeline behind them: what they show, and who may press what."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from pipelines.services import run_create
from projects.models import Project
from tests.factories import make_project
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client: Client) -> User:
    user = User.objects.create_user("viewer")
    client.force_login(user)
    return user


@pytest.fixture
def operator(client: Client) -> User:
    user = User.objects.create_user("ops", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def project() -> Project:
    return make_project(slug="web", test_command="sh test.sh")


def test_every_page_needs_a_login(client: Client, project: Project) -> None:
    for path in ("/", "/runs/", "/projects/web/", "/account/token/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/")


def test_the_dashboard_shows_projects_with_their_latest_runs(
    client: Client, viewer: User, project: Project
) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    page = client.get("/").content.decode()
    assert "web" in page and "#1" in page and "queued" in page
    assert 'hx-trigger="every 3s"' in page


def test_the_runs_page_lists_runs_with_their_stages(
    client: Client, viewer: User, project: Project
) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    page = client.get("/runs/").content.decode()
    assert "web #1" in page and "refs/heads/main" in page
    for stage in ("checkout", "config", "build", "test", "publish"):
        assert f"{stage}: pending" in page


def test_a_run_page_streams_its_log_and_offers_controls_only_to_operators(
    client: Client, project: Project
) -> None:
    run = run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    client.force_login(User.objects.create_user("viewer"))
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert f'data-ws-url="/ws/runs/{run.pk}/"' in page
    assert 'data-stage="build"' in page
    assert "Cancel run" not in page
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 403
    client.force_login(User.objects.create_user("ops", is_staff=True))
    assert "Cancel run" in client.get(f"/runs/{run.pk}/").content.decode()
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_the_project_page_filters_runs_by_branch_and_status(
    client: Client, viewer: User, project: Project
) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    run_create(project=project, ref="refs/heads/feature", commit_sha="d" * 40, trigger="webhook")
    page = client.get("/projects/web/?branch=feature").content.decode()
    assert "refs/heads/feature" in page and "refs/heads/main" not in page
    assert "No runs match" in client.get("/projects/web/?status=failed").content.decode()


def test_operators_change_filters_rotate_the_secret_and_replay_deliveries(
    client: Client, operator: User, project: Project
) -> None:
    old_secret = project.webhook_secret
    client.post(
        "/projects/web/settings/",
        {"branch_filter": "main release/*", "tag_filter": "v*", "cancel_superseded": "on"},
    )
    project.refresh_from_db()
    assert (project.branch_filter, project.tag_filter) == ("main release/*", "v*")
    assert (project.cancel_superseded, project.build_pull_requests) == (True, False)

    shown = client.post("/projects/web/rotate-secret/", follow=True).content.decode()
    project.refresh_from_db()
    assert project.webhook_secret != old_secret and project.webhook_secret in shown

    delivery = Delivery.objects.create(
        forge="github",
        delivery_id="d-1",
        event="ping",
        project=project,
        headers={"Content-Type": "application/json"},
        body=b'{"zen": "hi", "repository": {"clone_url": "x"}}',
    )
    replayed = client.post(f"/deliveries/{delivery.pk}/replay/", follow=True).content.decode()
    assert "replayed: pong" in replayed
    assert Delivery.objects.filter(replay_of=delivery).exists()


def test_viewers_may_not_change_settings_or_replay(
    client: Client, viewer: User, project: Project
) -> None:
    assert client.post("/projects/web/settings/", {"branch_filter": "x"}).status_code == 403
    assert client.post("/projects/web/rotate-secret/").status_code == 403
    assert "Rotate the webhook secret" not in client.get("/projects/web/").content.decode()


def test_the_token_page_makes_and_replaces_a_token_and_shows_it_only_once(
    client: Client, viewer: User
) -> None:
    made = client.post("/account/token/")
    first = re.search(r'<code id="token">([^<]+)</code>', made.content.decode())[1]
    assert made["Cache-Control"] == "no-store"
    assert first not in client.get("/account/token/").content.decode()
    api = APIClient(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.get("/api/v1/projects/").status_code == 200

    client.post("/account/token/")

    assert api.get("/api/v1/projects/").status_code == 401


def test_a_missing_page_under_the_api_answers_json(client: Client, viewer: User) -> None:
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_nul_character_in_a_filter_is_a_400(
    client: Client, viewer: User, project: Project
) -> None:
    assert client.get("/projects/web/?branch=a%00b").status_code == 400
