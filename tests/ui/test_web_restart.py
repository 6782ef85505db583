"""The web process is killed and started again while a browser streams a run's log: the page
reconnects by itself and ends with every line exactly once, in order."""

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Page, expect

from pipelines.models import LogChunk
from tests.factories import busybox_app_repo, make_project
from tests.operations.fault_stack import FaultStack
from tests.ui.conftest import PASSWORD, shot

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINES = 300
# One numbered line every 50 ms: the log is still coming while the web process is down,
# and for a while after it is back.
COUNTING_TEST = (
    f"sh -c 'for i in $(seq 1 {LINES}); do echo \"line $i of {LINES}\"; sleep 0.05; done'"
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path / "stack")
    stack.start_redis()
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


def test_a_browser_streaming_a_log_through_a_web_restart_misses_and_repeats_no_line(
    page: Page, stack: FaultStack, tmp_path: Path
) -> None:
    User.objects.create_user("watcher", password=PASSWORD, is_staff=True)
    repo = busybox_app_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url, test_command=COUNTING_TEST)
    page.goto(f"{stack.url}/")
    page.fill("input[name=username]", "watcher")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    run = stack.push(project, repo.commit("count"))
    page.goto(stack.url + reverse("run-detail", args=[run.pk]))
    log = page.locator("#run-log")
    expect(log).to_contain_text(f"line 10 of {LINES}", timeout=120_000)

    # A mark on the page's own log: a reload (which reads the whole log afresh) would lose it.
    page.evaluate("document.getElementById('run-log').runLog.streamedThrough = 'restart'")
    stack.kill_web()
    # Lines go on being stored while nobody serves the page.
    chunks_when_killed = LogChunk.objects.filter(run=run).count()
    time.sleep(2)
    assert LogChunk.objects.filter(run=run).count() > chunks_when_killed
    stack.start_web()

    # Read while the run still goes on: once it ends, the page reloads and reads it all anew.
    expect(log).to_contain_text(f"line 200 of {LINES}", timeout=60_000)
    held = page.evaluate(
        """() => {
          const runLog = document.getElementById('run-log').runLog;
          return {mark: runLog.streamedThrough, lines: runLog.lines.map((line) => line.text)};
        }"""
    )
    shot(page, "10-log-after-web-restart")
    assert held["mark"] == "restart", "the page reloaded instead of reconnecting"
    numbers = [
        int(n) for n in re.findall(rf"^line (\d+) of {LINES}$", "\n".join(held["lines"]), re.M)
    ]
    assert numbers == list(range(1, numbers[-1] + 1))
    assert numbers[-1] >= 200
