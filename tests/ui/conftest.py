"""The browser the UI tests drive: Debian's Chromium through Playwright."""

from collections.abc import Iterator

import pytest
from django.db import connections
from playwright.sync_api import Page, sync_playwright

from tests.conftest import SCREENSHOTS

CHROMIUM = "/usr/bin/chromium"
# As the machine's probe starts it: no sandbox as root, and nothing reaching out to the
# internet, which is closed here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a long test password"


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    # Playwright's sync API keeps an event loop running in this thread; the test's own
    # database calls are plain synchronous ones all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        yield context.new_page()
        context.close()
        browser.close()
        # The test's database connection was opened while Playwright's event loop ran, in a
        # context of its own that the suite's teardown cannot see: close it here.
        connections.close_all()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
