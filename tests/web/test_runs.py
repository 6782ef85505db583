"""The web pages, without a pipeline behind them: what they show, and who may press what."""

import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from pipelines.models import LogChunk
from pipelines.services import run_create
from pipelines.stage_log import StageLog
from projects.models import Project
from projects.secret_masking import MASK
from tests.factories import make_project, make_run_in_state
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


FAILING_TEST_LOG = [
    ("checkout", "checked out 0123456789ab\n"),
    ("build", "Step 1/2 : FROM scratch\nStep 2/2 : COPY . /app\n"),
    (
        "test",
        "collected 3 items\n"
        "tests/test_app.py::test_home PASSED\n"
        "\x1b[31mtests/test_app.py::test_login FAILED\x1b[0m\n"
        "E   assert 302 == 200\n"
        "1 failed, 2 passed\n\n",
    ),
]


def test_every_page_needs_a_login(client: Client, project: Project) -> None:
    make_run_in_state(project)
    paths = (
        "/",
        "/runs/",
        "/projects/web/",
        "/projects/web/runs/1/",
        "/projects/web/runs/1/log.txt",
        "/projects/web/runs/1/log/search?q=x",
        "/account/token/",
    )
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/")


def test_the_dashboard_shows_projects_with_their_latest_runs(
    client: Client, viewer: User, project: Project
) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    page = client.get("/").content.decode()
    assert 'href="/projects/web/runs/1/">#1</a>' in page and "queued" in page
    assert 'hx-trigger="every 3s"' in page


def test_the_runs_page_lists_runs_with_their_stages_commit_duration_and_age(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(
        project,
        commit_message="Greet visitors by name\n\nThe body of the message.",
        commit_author="Ada Lovelace <ada@example.com>",
    )
    page = client.get("/runs/").content.decode()
    assert '<a href="/projects/web/runs/1/" class="nowrap">web #1</a>' in page
    assert "refs/heads/main" in page
    assert "Greet visitors by name" in page and "The body" not in page
    assert "Ada Lovelace &lt;ada@example.com&gt;" in page
    # Five stages of a minute each.
    assert "5 min 00 s" in page
    assert re.search(r'<time datetime="[^"]+Z" data-local-title>7 min ago</time>', page)
    for stage in ("checkout", "config", "build", "test", "publish"):
        assert f"{stage}: succeeded" in page


def test_a_run_page_streams_its_log_and_offers_controls_only_to_operators(
    client: Client, project: Project
) -> None:
    run = run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    client.force_login(User.objects.create_user("viewer"))
    page = client.get("/projects/web/runs/1/").content.decode()
    assert f'data-ws-url="/ws/runs/{run.pk}/"' in page
    assert 'data-search-url="/projects/web/runs/1/log/search"' in page
    assert 'data-stage="build"' in page
    assert "Cancel run" not in page
    assert client.post("/projects/web/runs/1/cancel/").status_code == 403
    client.force_login(User.objects.create_user("ops", is_staff=True))
    assert "Cancel run" in client.get("/projects/web/runs/1/").content.decode()
    assert client.post("/projects/web/runs/1/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_a_run_is_called_by_its_project_and_number_on_its_page_in_its_address_and_in_links(
    client: Client, viewer: User, project: Project
) -> None:
    # Another project's run first, so that the database id and the number differ.
    make_run_in_state(make_project(slug="other"))
    run = make_run_in_state(project, number=2)
    assert run.pk != run.number

    page = client.get("/projects/web/runs/2/").content.decode()
    assert "<title>web #2 · Dockyard</title>" in page
    assert f"#{run.pk}" not in page.replace(f'"/ws/runs/{run.pk}/"', "")
    assert 'href="/projects/web/runs/2/"' in client.get("/runs/").content.decode()
    # The addresses handed out by id (chat, commit statuses, the API) lead to the same page.
    by_id = client.get(f"/runs/{run.pk}/")
    assert (by_id.status_code, by_id["Location"]) == (301, "/projects/web/runs/2/")
    log_by_id = client.get(f"/runs/{run.pk}/log.txt")
    assert log_by_id["Location"] == "/projects/web/runs/2/log.txt"
    assert client.get("/projects/web/runs/3/").status_code == 404


def test_the_run_page_shows_when_the_run_and_each_stage_was_queued_started_and_finished(
    client: Client, viewer: User, project: Project
) -> None:
    run = make_run_in_state(project)
    page = client.get("/projects/web/runs/1/").content.decode()
    for moment in (run.created_at, run.started_at, run.finished_at):
        shown = moment.strftime("%Y-%m-%d %H:%M:%S")
        assert f'data-local-time="date">{shown} UTC</time>' in page, moment
    # A stage's times are on the run's day: the date is said once, above.
    build = run.stages.get(name="build")
    for moment in (build.queued_at, build.started_at, build.finished_at):
        assert moment.strftime('data-local-time="time">%H:%M:%S UTC</time>') in page
    facts = re.search(r'<dl class="facts">(.*?)</dl>', page, re.S)[1]
    assert "<dt>Queued for</dt><dd>5.0 s</dd>" in facts
    assert "<dt>Duration</dt><dd>5 min 00 s</dd>" in facts


def test_a_failed_run_names_its_stage_shows_its_last_lines_and_links_to_the_error(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(
        project,
        status="failed",
        at_stage="test",
        failure_reason="tests failed: exit code 1",
        log=FAILING_TEST_LOG,
    )
    page = client.get("/projects/web/runs/1/").content.decode()
    banner = re.search(
        r'<section class="banner banner-failed" id="failure">(.*?)</section>', page, re.S
    )[1]
    assert 'Failed at <span class="failed-stage">test</span>' in banner
    assert "tests failed: exit code 1" in banner
    # The test stage's lines, numbered as the viewer numbers them, colours left out.
    assert '<a href="#L6" class="log-number">6</a> tests/test_app.py::test_login FAILED' in banner
    assert '<a href="#L8" class="log-number">8</a> 1 failed, 2 passed' in banner
    assert "Step 2/2" not in banner
    assert '<a href="#L6" id="jump-to-error"' in banner
    assert 'data-error-line="6"' in page


def test_a_run_page_without_a_failure_has_no_failure_banner(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(project, log=FAILING_TEST_LOG[:1])
    page = client.get("/projects/web/runs/1/").content.decode()
    assert 'id="failure"' not in page and "data-error-line" not in page


def test_cancelling_asks_first_then_says_who_cancelled(
    client: Client, operator: User, project: Project
) -> None:
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    page = client.get("/projects/web/runs/1/").content.decode()
    confirmation = re.search(
        r'<details class="confirm-inline" id="cancel-run">(.*?)</details>', page, re.S
    )
    assert confirmation and "Yes, cancel web #1" in confirmation[1]

    cancelled = client.post("/projects/web/runs/1/cancel/", follow=True).content.decode()

    assert "You cancelled web #1." in cancelled
    assert "<strong>Cancelled by ops</strong>" in cancelled
    assert "removal of container" not in cancelled
    again = client.post("/projects/web/runs/1/cancel/", follow=True).content.decode()
    assert "web #1 had already ended (cancelled)." in again


def test_a_run_cancelled_by_a_newer_push_says_so(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(
        project, status="cancelled", at_stage="build", ended_because="superseded by #2"
    )
    page = client.get("/projects/web/runs/1/").content.decode()
    assert "<strong>Cancelled: superseded by #2</strong>" in page


def test_a_retry_says_which_run_it_retries_and_a_rebuild_which_base_caused_it(
    client: Client, operator: User, project: Project
) -> None:
    make_run_in_state(project, number=3, status="failed", at_stage="test")
    response = client.post("/projects/web/runs/3/retry/")
    assert response["Location"] == "/projects/web/runs/4/"
    retry = client.get("/projects/web/runs/4/").content.decode()
    assert 'A retry of <a href="/projects/web/runs/3/">web #3</a>.' in retry
    assert "published a new base" not in retry

    base = make_project(slug="base")
    base_run = make_run_in_state(base, number=7)
    make_run_in_state(project, number=5, trigger="base-updated", triggered_by=base_run)
    page = client.get("/projects/web/runs/5/").content.decode()
    assert (
        'Rebuilt because <a href="/projects/base/runs/7/">base #7</a> published a new base' in page
    )


def test_the_raw_log_is_the_stored_log_streamed_with_its_secrets_masked(
    project: Project, viewer: User
) -> None:
    run = make_run_in_state(project)
    writer = StageLog(run.stages.get(name="test"), secrets=["hunter2-secret"])
    for line in ("\x1b[32mok\x1b[0m", "password is hunter2-secret", "é, 日本, and a tab\t."):
        writer.line(line)
    writer.close()
    stored = "".join(
        LogChunk.objects.filter(run=run).order_by("seq").values_list("text", flat=True)
    )

    async_client = AsyncClient()
    async_to_sync(async_client.aforce_login)(viewer)

    async def download() -> tuple[StreamingHttpResponse, bytes]:
        response = await async_client.get("/projects/web/runs/1/log.txt")
        return response, b"".join([part async for part in response.streaming_content])

    response, body = async_to_sync(download)()

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.is_async, "streamed from an asynchronous iterator, never whole in memory"
    assert body.decode() == stored
    assert "hunter2-secret" not in body.decode() and f"password is {MASK}" in body.decode()


def test_the_raw_log_is_read_in_batches_of_chunks(
    monkeypatch: pytest.MonkeyPatch, project: Project, viewer: User
) -> None:
    monkeypatch.setattr("web.run_logs.DOWNLOAD_BATCH_CHUNKS", 2)
    run = make_run_in_state(project, log=[("build", f"line {n}\n") for n in range(1, 6)])
    async_client = AsyncClient()
    async_to_sync(async_client.aforce_login)(viewer)

    async def download() -> bytes:
        response = await async_client.get("/projects/web/runs/1/log.txt")
        return b"".join([part async for part in response.streaming_content])

    assert async_to_sync(download)().decode() == "".join(f"line {n}\n" for n in range(1, 6))
    assert run.log_chunks.count() == 5


def test_the_log_search_finds_every_matching_line_of_the_stored_log_by_number(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(
        project,
        status="failed",
        at_stage="test",
        failure_reason="tests failed",
        log=FAILING_TEST_LOG,
    )
    found = client.get("/projects/web/runs/1/log/search", {"q": "TEST_"}).json()
    assert found["truncated"] is False
    assert [(match["line"], match["stage"]) for match in found["matches"]] == [
        (5, "test"),
        (6, "test"),
    ]
    # Searched as shown: the colour codes around "FAILED" are not part of the text.
    assert found["matches"][1]["text"] == "tests/test_app.py::test_login FAILED"
    assert client.get("/projects/web/runs/1/log/search", {"q": "[31m"}).json()["matches"] == []


def test_the_log_search_says_when_it_stopped_short_and_refuses_empty_searches(
    monkeypatch: pytest.MonkeyPatch, client: Client, viewer: User, project: Project
) -> None:
    monkeypatch.setattr("web.run_logs.SEARCH_MATCHES_LIMIT", 3)
    make_run_in_state(project, log=[("build", "".join(f"line {n}\n" for n in range(1, 11)))])
    capped = client.get("/projects/web/runs/1/log/search", {"q": "line"}).json()
    assert [match["line"] for match in capped["matches"]] == [1, 2, 3]
    assert capped["truncated"] is True
    assert client.get("/projects/web/runs/1/log/search", {"q": ""}).status_code == 400
    assert client.get("/projects/web/runs/1/log/search", {"q": "x" * 201}).status_code == 400


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
    assert client.get("/?q=a%00b").status_code == 400


def test_the_run_page_links_the_commit_to_the_forge(
    client: Client, viewer: User, project: Project
) -> None:
    run = make_run_in_state(project)
    page = client.get("/projects/web/runs/1/").content.decode()
    assert f'href="https://github.com/acme/web/commit/{run.commit_sha}"' in page
