"""In headless Chromium, over runs and deployments made directly in the database (no worker,
no Docker): the log viewer (a failure's banner and its error line, links to lines, search,
the raw log) and every page at a desktop's and a phone's width.

Screenshots of each page at 1440 and 390 px land in test-artifacts/screenshots/.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from builds.models import UpstreamMove
from pipelines.models import LogChunk, PipelineRun, TestCase, TestStep
from projects.models import BaseDependency, Project
from releases.models import Deployment, DeploymentEvent, Environment, HostDeployment, Release
from releases.services import local_host
from tests.conftest import SCREENSHOTS
from tests.factories import (
    make_environment,
    make_host,
    make_project,
    make_release,
    make_run_in_state,
    make_succeeded_deployment,
)
from tests.ui.conftest import PASSWORD
from web.log_lines import numbered_lines

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
ESC = "\x1b"

# The failing run's log: 3 lines of checkout and config, 1,500 coloured build lines, then the
# test stage, which fails. 1,550 lines in all.
BUILD_LINES = 1500
NEEDLE_LINE = 77
NEEDLE = "needle: the only line that says so"
FIRST_FAILURE = "tests/test_app.py::test_login FAILED"


def failing_log() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = [
        ("checkout", "fetching https://github.com/acme/demo-app.git"),
        (
            "checkout",
            "checked out 0123456789ab Greet visitors by name (Ada Lovelace <ada@example.com>)",
        ),
        ("config", "dockyard.yml: 1 image, tests, 2 environments"),
    ]
    for n in range(BUILD_LINES):
        number = len(lines) + 1
        if number == NEEDLE_LINE:
            lines.append(("build", NEEDLE))
        elif n % 50 == 0:
            lines.append(("build", f"{ESC}[1;36mStep {n // 50 + 1}/30{ESC}[0m : RUN make part-{n}"))
        elif n % 7 == 0:
            lines.append(
                ("build", f"{ESC}[33mwarning:{ESC}[0m deprecated flag in part-{n} " + "=" * 120)
            )
        else:
            lines.append(
                ("build", f" ---> compiling module {n} of {BUILD_LINES} {ESC}[32mok{ESC}[0m")
            )
    test_lines = [
        f"{ESC}[1m{' test session starts ':=^80}{ESC}[0m",
        "collected 46 items",
        *(f"tests/test_app.py::test_case_{n} {ESC}[32mPASSED{ESC}[0m" for n in range(40)),
        f"{ESC}[31m{FIRST_FAILURE}{ESC}[0m",
        "    def test_login(client):",
        ">       assert client.get('/login').status_code == 200",
        "E       assert 302 == 200",
        f"{ESC}[31m{' 1 failed, 45 passed in 3.10s ':=^80}{ESC}[0m",
    ]
    lines.extend(("test", line) for line in test_lines)
    # Stored as the stage log stores it: in chunks of many lines.
    chunks: list[tuple[str, str]] = []
    for stage, line in lines:
        if chunks and chunks[-1][0] == stage and chunks[-1][1].count("\n") < 100:
            chunks[-1] = (stage, chunks[-1][1] + line + "\n")
        else:
            chunks.append((stage, line + "\n"))
    return chunks


# The run whose test stage failed in step unit, which ran side by side with integration: its
# log has a section per step, its steps' JUnit reports a case per test.
UNIT_FAILURE = "tests/unit/test_cart.py::test_total_with_discount FAILED"
FIRST_FAILED_CASE = "test_total_with_discount"
LONG_CASE_NAME = (
    "test_checkout_total[currency=EUR-items=17-discount=percentage-shipping=express"
    "-customer=returning]"
)


def sectioned_log() -> list[tuple[str, str, str]]:
    """(stage, section, text) chunks, the steps' output interleaved as they ran side by side."""
    build = "".join(f"Step {n}/30 : RUN make part-{n}\n ---> ok\n" for n in range(1, 31))
    unit_passes = "".join(f"tests/unit/test_cart.py::test_case_{n} PASSED\n" for n in range(20))
    return [
        (
            "checkout",
            "",
            "fetching https://github.com/acme/demo-app.git\nchecked out 89abcdef0123\n",
        ),
        ("config", "", "read dockyard.yml: 1 image, 3 test steps, 1 service\n"),
        ("build", "", build),
        ("test", "", "image app: 127.0.0.1:5000/demo-app@sha256:" + "ab" * 32 + "\n"),
        ("test", "services", "service db: starting postgres:16\nservice db: ready\n"),
        ("test", "lint", "$ ruff check .\nAll checks passed!\n"),
        ("test", "unit", "$ pytest -q tests/unit --junitxml=reports/unit.xml\n" + unit_passes),
        ("test", "integration", "$ pytest -q tests/integration --junitxml=reports/int.xml\n"),
        ("test", "unit", f"{ESC}[31m{UNIT_FAILURE}{ESC}[0m\nE   assert 90 == 85\n"),
        ("test", "integration", "tests/integration/test_db.py::test_migrations PASSED\n"),
        (
            "test",
            "unit",
            "3 failed, 1 error, 38 passed in 4.20s\n"
            "report reports/unit.xml: 38 passed, 3 failed, 1 error\n"
            "step unit exited with status 1\n",
        ),
        (
            "test",
            "integration",
            "2 passed, 2 skipped\nreport reports/int.xml: 2 passed, 2 skipped\n",
        ),
        ("test", "", "test failed: step unit exited with status 1\n"),
    ]


SECTIONED_LINES = len(list(numbered_lines(sectioned_log())))


def make_tested_run(project: Project, number: int) -> PipelineRun:
    """A run failed by its unit step, with its sectioned log, its steps and their cases."""
    run = make_run_in_state(
        project,
        number=number,
        status="failed",
        at_stage="test",
        failure_reason="step unit exited with status 1",
        commit_message="Apply discounts before shipping",
    )
    stages = {stage.name: stage for stage in run.stages.all()}
    LogChunk.objects.bulk_create(
        LogChunk(run=run, stage=stages[stage], section=section, seq=seq, text=text)
        for seq, (stage, section, text) in enumerate(sectioned_log(), start=1)
    )
    began = run.started_at + timedelta(minutes=3)
    steps = {
        name: TestStep.objects.create(
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
                ("lint", 0, "succeeded", 0, 3.2),
                ("unit", 1, "failed", 1, 4.9),
                ("integration", 1, "succeeded", 0, 71),
            ]
        )
    }
    traceback = "\n".join(
        [
            "Traceback (most recent call last):",
            *(
                f'  File "app/cart.py", line {n}, in total\n    return apply(rules[{n}])'
                for n in range(12)
            ),
            "AssertionError: assert 90 == 85",
        ]
    )
    cases = [
        (
            "unit",
            FIRST_FAILED_CASE,
            "failed",
            0.31,
            "AssertionError: assert 90 == 85\n +  where 90 = total(cart)",
        ),
        ("unit", LONG_CASE_NAME, "failed", 1.02, traceback),
        (
            "unit",
            "test_coupon_code",
            "failed",
            0.05,
            "AssertionError: assert '<script>alert(1)</script>' == 'SAVE10'",
        ),
        ("unit", "test_currency_rounding", "error", 0.01, "fixture 'rates' not found"),
        ("integration", "test_mail_receipt", "skipped", 0.0, "no mail server in CI"),
        ("integration", "test_payment_gateway", "skipped", 0.0, "needs credentials"),
        ("integration", "test_migrations", "passed", 12.4, ""),
        ("integration", "test_search_index", "passed", 31.8, ""),
        *(("unit", f"test_case_{n}", "passed", 0.02 * n, "") for n in range(38)),
    ]
    TestCase.objects.bulk_create(
        TestCase(
            run=run,
            step=steps[step],
            report=f"reports/{step}.xml",
            name=name,
            classname=f"tests.{step}.test_cart.TestCart",
            file=f"tests/{step}/test_cart.py",
            status=status,
            seconds=seconds,
            message=message,
        )
        for step, name, status, seconds, message in cases
    )
    return run


# The base whose move rebuilt demo-app through the base-images project, and the new digest.
MOVED_BASE = "registry.example.com/library/debian:12-slim"
MOVED_TO = "sha256:" + "7e" * 32


def make_upstream_waves(project: Project, other: Project) -> None:
    """Two moves that rebuilt demo-app: debian rebuilt base-images and other-app, and
    base-images' rebuild then demo-app; python, the day before, demo-app itself."""
    base = make_project(slug="base-images")
    BaseDependency.objects.create(project=project, base_project=base, image="app")
    base_run = make_run_in_state(base, number=12, trigger="upstream-moved")
    debian = UpstreamMove.objects.create(
        reference=MOVED_BASE, old_digest="sha256:" + "3c" * 32, new_digest=MOVED_TO
    )
    debian.runs.set(
        [
            base_run,
            make_run_in_state(
                other, number=4, trigger="upstream-moved", status="failed", at_stage="test"
            ),
        ]
    )
    make_run_in_state(project, number=9, trigger="base-updated", triggered_by=base_run)
    python = UpstreamMove.objects.create(
        reference="python:3.12", old_digest="sha256:" + "0f" * 32, new_digest="sha256:" + "a9" * 32
    )
    python.runs.set([make_run_in_state(project, number=10, trigger="upstream-moved")])
    UpstreamMove.objects.filter(pk=python.pk).update(detected_at=timezone.now() - timedelta(days=1))


def line_number_of(text: str) -> int:
    numbered = [line for _, chunk in failing_log() for line in chunk.splitlines()]
    return next(n for n, line in enumerate(numbered, 1) if text in line)


@dataclass
class Site:
    url: str
    project: Project
    failing: PipelineRun
    running: PipelineRun
    tested: PipelineRun

    def run_url(self, run: PipelineRun) -> str:
        return f"{self.url}/projects/{self.project.slug}/runs/{run.number}/"


@pytest.fixture
def site(web_server: str) -> Site:
    User.objects.create_user("ops", password=PASSWORD, is_staff=True)
    # Another project's runs first: run ids and run numbers differ, as they do in real life.
    other = make_project(slug="other-app")
    for number in (1, 2, 3):
        make_run_in_state(other, number=number)
    project = make_project(slug="demo-app", repository_url="https://github.com/acme/demo-app.git")
    author = "Ada Lovelace <ada@example.com>"
    passed = make_run_in_state(
        project,
        number=1,
        commit_message="Greet visitors by name",
        commit_author=author,
        log=[("checkout", "checked out\n"), ("build", "built\n"), ("test", "ok\n")],
    )
    failing = make_run_in_state(
        project,
        number=2,
        status="failed",
        at_stage="test",
        failure_reason="tests failed: exit code 1",
        commit_message="Log visitors in with their email address",
        commit_author=author,
        log=failing_log(),
    )
    make_run_in_state(
        project, number=3, status="cancelled", at_stage="build", ended_because="cancelled by ops"
    )
    # Before the running run: that one stays the project's latest on the dashboard.
    tested = make_tested_run(project, 8)
    make_upstream_waves(project, other)
    running = make_run_in_state(
        project,
        number=7,
        status="running",
        at_stage="build",
        log=[("checkout", "checked out\n"), ("config", "read\n"), ("build", "Step 1/3 : FROM")],
    )
    staging = make_environment(project, "staging")
    fleet = [local_host(), make_host("web-2", "127.0.0.3"), make_host("web-3", "127.0.0.4")]
    production = make_environment(project, "production", after=staging, hosts=fleet)
    releases = [make_release(project, number) for number in (4, 5)]
    for environment in (staging, production):
        for release in releases:
            deployed_with_its_steps(environment, release)
    # Staging is taking release 6 as the pages are looked at: its steps show as they happen.
    deploying = Deployment.objects.create(
        environment=staging, release=make_release(project, 6), kind="auto", status="rolling"
    )
    DeploymentEvent.objects.bulk_create(
        DeploymentEvent(deployment=deploying, from_status="", to_status=step, detail=f"{step}…")
        for step in ("queued", "preparing", "rolling")
    )
    HostDeployment.objects.create(
        deployment=deploying, host=local_host(), position=0, batch=0, status="checking"
    )
    DeploymentEvent.objects.bulk_create(
        DeploymentEvent(
            deployment=deploying, host=local_host(), from_status="", to_status=step, detail=step
        )
        for step in ("starting", "checking")
    )
    assert passed.pk != passed.number
    return Site(url=web_server, project=project, failing=failing, running=running, tested=tested)


def deployed_with_its_steps(environment: Environment, release: Release) -> None:
    deployment = make_succeeded_deployment(environment, release, live=True)
    began = timezone.now() - timedelta(minutes=3)
    steps = [(None, step) for step in ("queued", "preparing", "rolling")]
    for position, host in enumerate(environment.hosts.order_by("name")):
        HostDeployment.objects.create(
            deployment=deployment,
            host=host,
            position=position,
            batch=position,
            status="finished",
            container_id=f"{release.number}{position + 1}" * 32,
        )
        steps += [
            (host, step)
            for step in ("starting", "checking", "switching", "draining", "switched", "finished")
        ]
    steps += [(None, "finishing"), (None, "succeeded")]
    for offset, (host, step) in enumerate(steps):
        event = DeploymentEvent.objects.create(
            deployment=deployment, host=host, from_status="", to_status=step, detail=f"{step}"
        )
        DeploymentEvent.objects.filter(pk=event.pk).update(
            at=began + timedelta(seconds=0.7 * offset)
        )


@pytest.fixture
def browser_page(page: Page) -> Iterator[Page]:
    """A page in Paris, in British English: times must come out in CET or CEST, not UTC."""
    browser: Browser | None = page.context.browser
    assert browser is not None
    context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/Paris", locale="en-GB")
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Dashboard")


def log_loaded(page: Page, lines: int) -> None:
    page.wait_for_function(
        "n => document.getElementById('run-log').runLog?.numberedCount >= n", arg=lines
    )


def row_in_view(page: Page, number: int) -> bool:
    """Is line `number` drawn, and inside the log's visible box?"""
    return bool(
        page.evaluate(
            """n => {
                const box = document.getElementById('run-log').getBoundingClientRect();
                const row = document.querySelector(`#run-log .log-line[data-line="${n}"]`);
                if (!row) return false;
                const r = row.getBoundingClientRect();
                return r.top >= box.top && r.bottom <= box.bottom;
            }""",
            number,
        )
    )


def test_a_failing_run_shows_the_banner_with_its_stage_and_opens_at_the_error(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)
    error_line = line_number_of(FIRST_FAILURE)

    page.goto(site.run_url(site.failing))

    banner = page.locator("#failure")
    expect(banner.locator("h2")).to_have_text("Failed at test")
    expect(banner).to_contain_text("tests failed: exit code 1")
    expect(banner.locator(".banner-log")).to_contain_text("1 failed, 45 passed")
    log_loaded(page, 1550)
    target = page.locator("#run-log .log-line-target")
    expect(target).to_have_attribute("data-line", str(error_line))
    expect(target).to_contain_text(FIRST_FAILURE)
    assert row_in_view(page, error_line)
    # The stages' colours say where it broke: the test stage red, those after it skipped.
    expect(page.locator('li[data-stage="test"]')).to_have_class("stage stage-failed")
    expect(page.locator('li[data-stage="publish"] .status')).to_have_text("skipped")
    times = page.locator(".facts time").all_inner_texts()
    assert times and all(re.search(r"\d\d:\d\d:\d\d CES?T$", text) for text in times), times
    page.screenshot(path=str(SCREENSHOTS / "run-failed-at-error-1440.png"))

    page.evaluate("document.getElementById('run-log').scrollTop = 0")
    page.wait_for_function("!document.querySelector('#run-log .log-line-target')")
    page.click("#jump-to-error")
    expect(page.locator("#run-log .log-line-target")).to_have_attribute(
        "data-line", str(error_line)
    )
    assert row_in_view(page, error_line)


def test_a_search_finds_a_line_that_is_not_in_the_page(browser_page: Page, site: Site) -> None:
    page = browser_page
    log_in(page, site.url)
    page.goto(site.run_url(site.failing))
    log_loaded(page, 1550)
    # Opened at the error, some 1,450 lines below: the line is in no element of the page.
    assert not page.evaluate(f"document.body.textContent.includes({NEEDLE!r})")

    page.fill("#log-search input[name=q]", "NEEDLE: the only")
    page.press("#log-search input[name=q]", "Enter")

    current = page.locator("#run-log .log-line-current")
    expect(current).to_contain_text(NEEDLE)
    expect(current).to_have_attribute("data-line", str(NEEDLE_LINE))
    expect(page.locator("#log-search-status")).to_have_text(f"1 of 1 · line {NEEDLE_LINE}")
    assert row_in_view(page, NEEDLE_LINE)

    # Next and previous go through every match of the whole log, around the ends.
    page.fill("#log-search input[name=q]", "Step 1")
    page.press("#log-search input[name=q]", "Enter")
    status = page.locator("#log-search-status")
    expect(status).to_contain_text(" of 11 · line ")
    seen = set()
    for _ in range(11):
        seen.add(page.locator("#run-log .log-line-current").get_attribute("data-line"))
        page.click("[data-search-step='1']")
    assert len(seen) == 11
    page.click("[data-search-step='-1']")
    expect(page.locator("#run-log .log-line-current")).to_contain_text("Step 1")
    page.screenshot(path=str(SCREENSHOTS / "run-log-search-1440.png"))


def test_a_link_to_line_1234_opens_with_that_line_highlighted(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)

    page.goto(site.run_url(site.failing) + "#L1234")

    log_loaded(page, 1550)
    target = page.locator("#run-log .log-line-target")
    expect(target).to_have_count(1)
    expect(target).to_have_attribute("data-line", "1234")
    expect(target.locator(".log-number")).to_have_text("1234")
    assert row_in_view(page, 1234)
    page.screenshot(path=str(SCREENSHOTS / "run-line-1234-1440.png"))

    # A click on another line's number links to it and moves the highlight.
    page.locator('#run-log .log-line[data-line="1240"] .log-number').click()
    assert page.url.endswith("#L1240")
    expect(page.locator("#run-log .log-line-target")).to_have_attribute("data-line", "1240")


def test_a_stage_folds_under_its_header(browser_page: Page, site: Site) -> None:
    page = browser_page
    log_in(page, site.url)
    page.goto(site.run_url(site.failing) + "#L1")
    log_loaded(page, 1550)
    page.click('#run-log .log-fold[data-stage="checkout"]')
    page.click('#run-log .log-fold[data-stage="config"]')
    page.click('#run-log .log-fold[data-stage="build"]')
    rows = page.locator("#run-log .log-line")
    expect(rows.nth(0)).to_contain_text("── checkout ──")
    expect(rows.nth(1)).to_contain_text("── config ──")
    expect(rows.nth(2)).to_contain_text("── build ──")
    expect(rows.nth(3)).to_contain_text("── test ──")
    expect(page.locator('#run-log .log-fold[data-stage="build"]')).to_have_attribute(
        "aria-expanded", "false"
    )


def test_the_download_equals_the_stored_log(browser_page: Page, site: Site) -> None:
    page = browser_page
    log_in(page, site.url)
    page.goto(site.run_url(site.failing))
    stored = "".join(
        LogChunk.objects.filter(run=site.failing).order_by("seq").values_list("text", flat=True)
    )

    with page.expect_download() as download_info:
        page.click("#log-download")

    download = download_info.value
    assert download.suggested_filename == "demo-app-2.log"
    assert Path(download.path()).read_bytes() == stored.encode()


def test_no_page_is_wider_than_a_phone_and_each_is_photographed_at_both_widths(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    cancelled = PipelineRun.objects.get(project=site.project, number=3)
    pages = {
        "login": "/accounts/login/",
        "dashboard": "/",
        "runs": "/runs/",
        "run": site.run_url(site.failing).removeprefix(site.url),
        "run-cancelled": site.run_url(cancelled).removeprefix(site.url),
        "run-running": site.run_url(site.running).removeprefix(site.url),
        "run-tests": site.run_url(site.tested).removeprefix(site.url),
        "project": f"/projects/{site.project.slug}/",
        "environment": f"/projects/{site.project.slug}/environments/production/",
        "environment-deploying": f"/projects/{site.project.slug}/environments/staging/",
        "rollback": f"/projects/{site.project.slug}/environments/production/rollback/",
        "token": "/account/token/",
        "error": "/projects/no-such-project/",
    }
    too_wide = {}
    for name, path in pages.items():
        if name == "dashboard":
            page.set_viewport_size(PHONE)
            page.fill("input[name=username]", "ops")
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            expect(page.locator("#login-error")).to_have_count(1)
            page.screenshot(path=str(SCREENSHOTS / "login-failed-390.png"), full_page=True)
            page.set_viewport_size(DESKTOP)
            log_in(page, site.url)
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            page.goto(site.url + path)
            page.wait_for_load_state("load")
            if name == "run":
                log_loaded(page, 1550)
            if name == "run-tests":
                log_loaded(page, SECTIONED_LINES)
            if name == "run-running":
                # Cancelling asks first.
                page.click("#cancel-run summary")
                expect(page.locator("#confirm-cancel")).to_have_text("Yes, cancel demo-app #7")
            width = viewport["width"]
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
            if viewport is PHONE:
                scroll_width, inner_width = page.evaluate(
                    "[document.documentElement.scrollWidth, window.innerWidth]"
                )
                if scroll_width > inner_width:
                    too_wide[name] = scroll_width
    assert too_wide == {}, f"wider than {PHONE['width']} px: {too_wide}"


def test_the_dashboard_narrows_to_the_projects_typed_in_its_search(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)
    expect(page.locator("#dashboard tr.project-other-app")).to_have_count(1)

    page.fill("#project-search", "demo")

    expect(page.locator("#dashboard tr.project-other-app")).to_have_count(0)
    expect(page.locator("#dashboard tr.project-demo-app")).to_have_count(1)
    assert page.url.endswith("?q=demo&status=")
    page.select_option("#status-filter", "failed")
    expect(page.locator("#dashboard")).to_contain_text("No project matches")


def test_the_api_docs_and_the_admin_lead_back_to_the_app(browser_page: Page, site: Site) -> None:
    page = browser_page
    log_in(page, site.url)
    for name, path, loaded in (
        ("api-docs", "/api/v1/docs/", ".swagger-ui .info"),
        ("admin", "/admin/", "#site-name"),
    ):
        page.goto(site.url + path)
        expect(page.locator(loaded)).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / f"{name}-1440.png"))
        page.click("#back-to-dockyard")
        expect(page.locator("h1")).to_have_text("Dashboard")


def test_a_run_failed_by_its_junit_report_shows_the_failures_first(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)
    page.goto(site.run_url(site.tested))

    banner = page.locator("#failure")
    expect(banner.locator("h2")).to_have_text("Failed at test, step unit")
    expect(banner.locator(".banner-log")).to_contain_text("step unit exited with status 1")
    expect(banner.locator(".banner-log")).not_to_contain_text("integration")
    expect(page.locator("#test-counts")).to_contain_text("3 failed")
    expect(page.locator("#test-counts")).to_contain_text("40 passed")
    first = page.locator("#tests .test-case").first
    expect(first.locator(".case-name")).to_have_text(FIRST_FAILED_CASE)
    expect(first.locator(".case-name")).to_be_visible()
    expect(first.locator(".case-message")).to_contain_text("assert 90 == 85")
    expect(page.locator("#tests .test-case")).to_have_count(4)
    # A message that says <script> is text on the page, not a script.
    expect(page.locator("#tests .test-case").nth(2).locator(".case-message")).to_contain_text(
        "'<script>alert(1)</script>'"
    )
    # The long traceback is folded under its first line until asked for.
    long_one = page.locator("#tests .test-case").nth(1)
    expect(long_one.locator("pre.case-message")).not_to_be_visible()
    long_one.locator("summary").click()
    expect(long_one.locator("pre.case-message")).to_be_visible()
    # The passing cases wait behind their summary.
    expect(page.locator("#other-cases table")).not_to_be_visible()
    # unit and integration ran side by side: one row, the mark between them.
    parallel = page.locator(".step-group-parallel")
    expect(parallel.locator(".test-step")).to_have_count(2)
    expect(parallel).to_contain_text("∥")
    expect(page.locator('.test-step[data-step="unit"] .exit-code')).to_have_text("exit 1")

    # The log opens where the failed step went wrong: the server and the view agree on its number.
    log_loaded(page, SECTIONED_LINES)
    target = page.locator("#run-log .log-line-target")
    expect(target).to_contain_text(UNIT_FAILURE)
    expect(target).to_have_attribute("data-section", "unit")

    banner.locator(".failed-cases a").click()
    assert page.url.endswith("#test-failures")
    expect(page.locator("#test-failures")).to_be_in_viewport()
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(site.run_url(site.tested))
        log_loaded(page, SECTIONED_LINES)
        page.locator("#other-cases summary").click()
        page.locator("#tests .test-case").nth(1).locator("summary").click()
        page.screenshot(
            path=str(SCREENSHOTS / f"run-test-report-{viewport['width']}.png"), full_page=True
        )
        page.locator("#tests").screenshot(
            path=str(SCREENSHOTS / f"run-test-report-section-{viewport['width']}.png")
        )
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, (viewport, scroll_width)


def test_a_test_steps_section_of_the_log_folds_and_unfolds(browser_page: Page, site: Site) -> None:
    page = browser_page
    log_in(page, site.url)
    page.goto(site.run_url(site.tested) + "#L1")
    log_loaded(page, SECTIONED_LINES)
    unit_lines = page.locator('#run-log .log-line[data-section="unit"][data-line]')
    integration_lines = page.locator('#run-log .log-line[data-section="integration"][data-line]')
    # Down to the end of the log, again until the unit step's last lines are drawn (the
    # viewer may still be scrolling to line 1 of the address once it has loaded).
    page.wait_for_function(
        """() => {
            const log = document.getElementById('run-log');
            log.scrollTop = 1e6;
            return !!log.querySelector('.log-line[data-section="unit"][data-line]');
        }"""
    )
    unit_header = page.locator('#run-log .log-section .log-fold[data-section="unit"]').first

    unit_header.click()

    expect(unit_lines).to_have_count(0)
    expect(integration_lines.first).to_be_attached()
    expect(page.locator('#run-log .log-fold[data-section="unit"]').first).to_have_attribute(
        "aria-expanded", "false"
    )
    page.screenshot(path=str(SCREENSHOTS / "run-log-step-folded-1440.png"))

    # A link to a line of the folded step unfolds it and shows the line.
    error_line = next(
        line.number for line in numbered_lines(sectioned_log()) if line.text == UNIT_FAILURE
    )
    page.evaluate(f"location.hash = '#L{error_line}'")
    target = page.locator("#run-log .log-line-target")
    expect(target).to_have_attribute("data-line", str(error_line))
    expect(target).to_contain_text(UNIT_FAILURE)
    assert row_in_view(page, error_line)
    expect(page.locator('#run-log .log-fold[data-section="unit"]').first).to_have_attribute(
        "aria-expanded", "true"
    )

    page.locator('#run-log .log-fold[data-section="unit"]').first.click()
    expect(unit_lines).to_have_count(0)
    page.locator('#run-log .log-fold[data-section="unit"]').first.click()
    expect(unit_lines.first).to_be_attached()


def test_the_project_page_shows_its_slowest_and_most_often_failing_tests(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(f"{site.url}/projects/{site.project.slug}/")
        failing = page.locator("#failing-tests-table tbody tr")
        expect(failing).to_have_count(4)
        last_failed_in = failing.filter(has_text=FIRST_FAILED_CASE).locator("a")
        expect(last_failed_in).to_have_text("#8")
        expect(last_failed_in).to_be_visible()
        expect(page.locator("#slowest-tests-table tbody tr").first).to_contain_text(
            "test_search_index"
        )
        page.locator("#test-history").screenshot(
            path=str(SCREENSHOTS / f"project-tests-{viewport['width']}.png")
        )
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, (viewport, scroll_width)


def test_the_image_graph_shows_the_upstream_moves_that_rebuilt_the_project(
    browser_page: Page, site: Site
) -> None:
    page = browser_page
    log_in(page, site.url)
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(f"{site.url}/projects/{site.project.slug}/")
        waves = page.locator("#upstream-waves .wave")
        expect(waves).to_have_count(2)
        debian = waves.first
        expect(debian.locator(".wave-reference")).to_have_text(MOVED_BASE)
        expect(debian.locator(".wave-digests")).to_contain_text("→ " + MOVED_TO[:19])
        expect(debian.locator(".wave-runs > li > a")).to_have_text(
            ["base-images #12", "other-app #4"]
        )
        rebuild = debian.locator(".wave-rebuilds a")
        expect(rebuild).to_have_text("demo-app #9")
        expect(rebuild).to_be_visible()
        page.locator("#upstream-waves").screenshot(
            path=str(SCREENSHOTS / f"project-upstream-waves-{viewport['width']}.png")
        )
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, (viewport, scroll_width)

    # Each run of the wave leads to its page.
    debian.locator(".wave-runs > li > a", has_text="other-app #4").click()
    expect(page.locator("h1")).to_contain_text("other-app #4")
