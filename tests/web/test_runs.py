"""The web pages, without a pipeline behind them: what they show, and who may press what."""

import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pipelines.models import LogChunk, PipelineRun, TestCase, TestStep
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


SCRIPT_MESSAGE = "AssertionError: assert '<script>alert(1)</script>' == ''"


def steps_and_cases(run: PipelineRun) -> None:
    """A lint step, then unit and integration side by side; unit failed with two cases, and
    the passing cases were stored first (failures come first by status, not by id)."""
    began = run.started_at
    _, unit, integration = (
        TestStep.objects.create(
            run=run,
            name=name,
            position=position,
            group=group,
            status=status,
            exit_code=exit_code,
            failure_reason="exited with status 1" if exit_code else "",
            started_at=began,
            finished_at=began + timedelta(seconds=seconds),
        )
        for position, (name, group, status, exit_code, seconds) in enumerate(
            [
                ("lint", 0, "succeeded", 0, 4),
                ("unit", 1, "failed", 1, 12.5),
                ("integration", 1, "succeeded", 0, 75),
            ]
        )
    )

    def case(step: TestStep, name: str, status: str, message: str = "") -> None:
        TestCase.objects.create(
            run=run,
            step=step,
            report=f"reports/{step.name}.xml",
            name=name,
            classname=f"tests.{step.name}.TestApp",
            file=f"tests/{step.name}/test_app.py",
            status=status,
            seconds=0.25,
            message=message,
        )

    case(unit, "test_home", "passed")
    case(integration, "test_database", "passed")
    case(integration, "test_mail", "skipped", "no mail server here")
    case(unit, "test_login", "failed", SCRIPT_MESSAGE)
    case(unit, "test_logout", "error", "\n".join(f"frame {n}" for n in range(40)))


def test_a_run_page_lists_failed_test_cases_first_with_their_messages_escaped(
    client: Client, viewer: User, project: Project
) -> None:
    run = make_run_in_state(
        project,
        status="failed",
        at_stage="test",
        failure_reason="step unit exited with status 1",
        log=FAILING_TEST_LOG,
    )
    steps_and_cases(run)
    page = client.get("/projects/web/runs/1/").content.decode()
    tests = re.search(r'<section id="tests" class="tests">(.*?)</section>', page, re.S)[1]
    counts = re.sub(
        r"\s+",
        " ",
        re.sub(
            r"<[^>]+>",
            "",
            re.search(r'<p class="case-counts" id="test-counts">(.*?)</p>', tests, re.S)[1],
        ),
    ).strip()
    assert counts == "1 failed 1 error 1 skipped 2 passed of 5 test cases"
    # Failures, then errors, before any passed case, whatever order they were stored in.
    order = [tests.index(name) for name in ("test_login", "test_logout", "test_home")]
    assert order == sorted(order)
    assert tests.index("test_database") > tests.index("test_logout")
    failed = re.search(r'<li class="test-case case-failed">(.*?)</li>', tests, re.S)[1]
    assert "tests.unit.TestApp" in failed and "tests/unit/test_app.py" in failed
    assert "0.25 s" in failed and "step unit" in failed
    # The message is shown as text: the page holds no script of the test's making.
    assert (
        '<pre class="case-message">AssertionError: assert &#x27;&lt;script&gt;alert(1)'
        "&lt;/script&gt;&#x27; == &#x27;&#x27;</pre>" in failed
    )
    assert "<script>alert(1)" not in page
    # A 40-line stack folds under its first line; the passing cases are folded away.
    errored = re.search(r'<li class="test-case case-error">(.*?)</li>', tests, re.S)[1]
    assert re.search(r"<details[^>]*>\s*<summary><code>frame 0</code>", errored)
    assert "(40 lines)" in errored and "frame 39" in errored
    assert re.search(r'<details class="other-cases" id="other-cases">\s*<summary>', tests)


def test_a_run_page_lists_its_test_steps_a_parallel_group_side_by_side(
    client: Client, viewer: User, project: Project
) -> None:
    steps_and_cases(make_run_in_state(project))
    page = client.get("/projects/web/runs/1/").content.decode()
    steps = re.search(r'<ol class="test-steps"[^>]*>(.*?)</ol>', page, re.S)[1]
    groups = re.findall(r'<li class="step-group[^"]*">(.*?)</li>', steps, re.S)
    names = [re.findall(r'data-step="([^"]+)"', group) for group in groups]
    assert names == [["lint"], ["unit", "integration"]]
    assert "∥" in groups[1] and "∥" not in groups[0]
    unit = re.search(
        r'<span class="test-step test-step-failed" data-step="unit">(.*?)</span>\s*</span>',
        steps,
        re.S,
    )
    assert unit is not None
    assert "12.5 s" in unit[1] and "exit 1" in unit[1]
    assert "1 min 15 s" in steps


def test_a_run_failed_by_a_test_step_names_the_step_and_links_to_its_failed_cases(
    client: Client, viewer: User, project: Project
) -> None:
    run = make_run_in_state(
        project,
        status="failed",
        at_stage="test",
        failure_reason="step unit exited with status 1",
        log=FAILING_TEST_LOG,
    )
    steps_and_cases(run)
    page = client.get("/projects/web/runs/1/").content.decode()
    banner = re.search(
        r'<section class="banner banner-failed" id="failure">(.*?)</section>', page, re.S
    )[1]
    assert ', step <span class="failed-step">unit</span>' in banner
    assert '<a href="#test-failures">2 test cases failed</a>' in banner
    assert 'id="test-failures"' in page


def test_a_run_without_test_steps_has_no_tests_section(
    client: Client, viewer: User, project: Project
) -> None:
    make_run_in_state(project, log=FAILING_TEST_LOG[:1])
    assert 'id="tests"' not in client.get("/projects/web/runs/1/").content.decode()


def test_the_project_page_shows_its_slowest_and_most_often_failing_tests(
    client: Client, viewer: User, project: Project
) -> None:
    assert 'id="test-history"' not in client.get("/projects/web/").content.decode()
    for number in (1, 2, 3):
        run = make_run_in_state(project, number=number)
        step = TestStep.objects.create(
            run=run, name="unit", position=0, group=0, status="failed", started_at=run.started_at
        )
        for name, seconds, failed_in in (("test_slow", 9.0, {1}), ("test_flaky", 0.5, {1, 2})):
            TestCase.objects.create(
                run=run,
                step=step,
                report="reports/unit.xml",
                name=name,
                classname="tests.test_app",
                file="tests/test_app.py",
                status="failed" if number in failed_in else "passed",
                seconds=seconds + number,
            )
    page = client.get("/projects/web/").content.decode()
    failing = re.search(
        r'<table class="cards cases" id="failing-tests-table">(.*?)</table>', page, re.S
    )[1]
    rows = re.findall(r"<tr>(.*?)</tr>", failing.split("<tbody>")[1], re.S)
    assert [re.search(r'class="wide case-name">([^<]+)', row)[1] for row in rows] == [
        "test_flaky",
        "test_slow",
    ]
    assert "2 of 3 runs" in rows[0] and "tests/test_app.py" in rows[0]
    # The run each last failed in, by link.
    assert 'href="/projects/web/runs/2/">#2</a>' in rows[0]
    assert 'href="/projects/web/runs/1/">#1</a>' in rows[1]
    slowest = re.search(
        r'<table class="cards cases" id="slowest-tests-table">(.*?)</table>', page, re.S
    )[1]
    slow_rows = re.findall(r"<tr>(.*?)</tr>", slowest.split("<tbody>")[1], re.S)
    assert "test_slow" in slow_rows[0] and "11.0 s over 3 runs" in slow_rows[0]
    assert "test_flaky" in slow_rows[1] and "2.50 s over 3 runs" in slow_rows[1]


# What the pages take today, whatever the size of the report; a change that adds a query
# should say why here. The run page of a run failed in its tests: 12. The project page with its
# test history (four of them, however many cases) and no upstream move: 17.
RUN_PAGE_QUERIES = 12
PROJECT_PAGE_QUERIES = 17


def bulk_cases(run: PipelineRun, *, failed: int, passed: int, seconds: float = 0.1) -> None:
    step = run.test_steps.first() or TestStep.objects.create(
        run=run, name="unit", position=0, group=0, status="failed", started_at=run.started_at
    )
    TestCase.objects.bulk_create(
        TestCase(
            run=run,
            step=step,
            report="reports/unit.xml",
            name=f"test_{status}_{n:05}",
            classname="tests.test_bulk",
            status=status,
            seconds=seconds + n / 1000,
            message="assert False" if status == "failed" else "",
        )
        for status, how_many in (("failed", failed), ("passed", passed))
        for n in range(how_many)
    )


def page_queries(client: Client, path: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_a_run_pages_queries_do_not_grow_with_its_test_cases(
    client: Client, viewer: User, project: Project, django_assert_max_num_queries: Any
) -> None:
    run = make_run_in_state(
        project,
        status="failed",
        at_stage="test",
        failure_reason="step unit exited with status 1",
        log=FAILING_TEST_LOG,
    )
    steps_and_cases(run)
    few, _ = page_queries(client, "/projects/web/runs/1/")
    bulk_cases(run, failed=250, passed=1500)

    with django_assert_max_num_queries(few):
        page = client.get("/projects/web/runs/1/").content.decode()

    assert few <= RUN_PAGE_QUERIES
    assert "<strong>251</strong> failed" in page and "<strong>1502</strong> passed" in page
    # The first 200 failures are listed, failed before errored; the rest are counted.
    assert page.count('<li class="test-case case-') == 200
    assert "And 52 more:" in page and "And 503 more:" in page
    assert 'href="/api/v1/runs/' in page


def test_the_project_pages_test_history_takes_as_many_queries_for_20_runs_as_for_2(
    client: Client, viewer: User, project: Project, django_assert_max_num_queries: Any
) -> None:
    for number in (1, 2):
        bulk_cases(make_run_in_state(project, number=number), failed=3, passed=30)
    few, _ = page_queries(client, "/projects/web/")
    for number in range(3, 26):
        bulk_cases(
            make_run_in_state(project, number=number), failed=number % 13, passed=60, seconds=0.2
        )

    with django_assert_max_num_queries(few):
        page = client.get("/projects/web/").content.decode()

    assert few <= PROJECT_PAGE_QUERIES
    failing = re.search(r'id="failing-tests-table">(.*?)</table>', page, re.S)[1]
    slowest = re.search(r'id="slowest-tests-table">(.*?)</table>', page, re.S)[1]
    # Ten of each, over the newest 20 runs with reports (6 to 25): test_failed_00000 failed in
    # all of them but 13, where it did not run at all.
    assert failing.count("<tr>") - 1 == 10 and slowest.count("<tr>") - 1 == 10
    first_failing = failing.split("</tr>")[1]
    assert "test_failed_00000" in first_failing and "19 of 19 runs" in first_failing
    assert 'href="/projects/web/runs/25/">#25</a>' in failing
    assert "test_passed_00059" in slowest.split("</tr>")[1]


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
