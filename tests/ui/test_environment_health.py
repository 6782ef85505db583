"""In headless Chromium: the environment page's health over an hour of traffic written straight
into the database (three hosts, two releases, a deploy that went bad for a while, a restart),
at a desktop's and a phone's width, refreshing itself.

Screenshots land in test-artifacts/screenshots/environment-health-*.png.
"""

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from releases.models import Deployment, Environment, Host, Release, TrafficSample
from releases.services import local_host
from releases.traffic_figures import COUNT_FIELDS, Figures
from tests.conftest import SCREENSHOTS
from tests.factories import make_environment, make_host, make_project, make_release
from tests.ui.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def deployment(
    environment: Environment, release: Release, kind: str, ago: timedelta, **fields: object
) -> Deployment:
    made = Deployment.objects.create(
        environment=environment, release=release, kind=kind, status="succeeded", slot="blue"
    )
    at = timezone.now() - ago
    Deployment.objects.filter(pk=made.pk).update(
        created_at=at - timedelta(seconds=40), finished_at=at, **fields
    )
    return made


def sample(
    environment: Environment,
    host: Host,
    release: Release,
    started: datetime,
    seconds: int,
    *,
    rate: float,
    errors: float,
    slow: bool,
    generator: random.Random,
) -> TrafficSample:
    figures = Figures()
    for _ in range(round(rate * seconds * generator.uniform(0.8, 1.2))):
        status = 500 if generator.random() < errors else 200
        figures.count(status, round(generator.lognormvariate(4.2 if slow else 3.3, 0.5)))
    return TrafficSample(
        environment=environment,
        host=host,
        release=release,
        slot="blue",
        rolled_up=seconds == 60,
        started_at=started,
        ended_at=started + timedelta(seconds=seconds),
        time_buckets=figures.time_buckets,
        **{name: getattr(figures, name) for name in COUNT_FIELDS},
    )


@pytest.fixture
def site(web_server: str) -> str:
    User.objects.create_user("ops", password=PASSWORD, is_staff=True)
    project = make_project(slug="shop")
    hosts = [local_host(), make_host("web-2", "127.0.0.3"), make_host("web-3", "127.0.0.4")]
    production = make_environment(project, "production", hosts=hosts)
    old, new = make_release(project, 41), make_release(project, 42)
    deployment(production, old, "deploy", timedelta(minutes=55))
    deployment(
        production,
        new,
        "promote",
        timedelta(minutes=24),
        watch_state="passed",
        watch_detail="41 of 2764 requests answered 5xx",
    )
    deployment(production, new, "restart", timedelta(minutes=9))
    watched = deployment(production, new, "scale", timedelta(minutes=2), replicas=2)
    Deployment.objects.filter(pk=watched.pk).update(
        watch_state="watching", watch_until=timezone.now() + timedelta(minutes=3)
    )
    Environment.objects.filter(pk=production.pk).update(current_release=new, live_slot="blue")
    now = timezone.now()
    generator = random.Random(42)
    samples = []
    for host in hosts:
        moment = (now - timedelta(minutes=62)).replace(second=0, microsecond=0)
        while moment < now - timedelta(seconds=5):
            recent = moment > now - timedelta(minutes=30)
            seconds = 5 if recent else 60
            minutes_ago = (now - moment).total_seconds() / 60
            serving = new if minutes_ago < 24 else old
            bad = 18 < minutes_ago < 24
            samples.append(
                sample(
                    production,
                    host,
                    serving,
                    moment,
                    seconds,
                    rate=9 + 3 * (minutes_ago < 40),
                    errors=0.06 if bad else 0.004,
                    slow=bad,
                    generator=generator,
                )
            )
            moment += timedelta(seconds=seconds)
    TrafficSample.objects.bulk_create(samples)
    staging = make_environment(project, "staging")
    deployment(staging, new, "deploy", timedelta(minutes=30))
    deployment(staging, new, "stop", timedelta(minutes=6))
    Environment.objects.filter(pk=staging.pk).update(
        current_release=new,
        live_slot="blue",
        stopped=True,
        auto_deploy_paused=(
            "the watch of deployment 12 saw release 42: 90 of 300 requests answered 5xx "
            "(30.0%, more than the 5.0% allowed); rolled back to release 41"
        ),
    )
    return web_server


@pytest.fixture
def browser_page(page: Page) -> Iterator[Page]:
    browser: Browser | None = page.context.browser
    assert browser is not None
    context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/Paris", locale="en-GB")
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def test_the_health_section_fits_a_desktop_and_a_phone_and_refreshes_itself(
    browser_page: Page, site: str
) -> None:
    page = browser_page
    page.goto(f"{site}/accounts/login/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    too_wide = {}
    for name in ("production", "staging"):
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            page.goto(f"{site}/projects/shop/environments/{name}/")
            expect(page.locator("#health svg.traffic-chart")).to_have_count(3)
            width = viewport["width"]
            page.screenshot(
                path=str(SCREENSHOTS / f"environment-health-{name}-{width}.png"), full_page=True
            )
            # The section alone, at its own size: the charts' small print can be read in it.
            page.locator("#health").screenshot(
                path=str(SCREENSHOTS / f"environment-health-{name}-{width}-section.png")
            )
            # And the buttons beside it, as they wrap.
            page.locator(".actions").screenshot(
                path=str(SCREENSHOTS / f"environment-health-{name}-{width}-actions.png")
            )
            scroll_width, inner_width = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            if scroll_width > inner_width:
                too_wide[f"{name}-{width}"] = scroll_width
    assert too_wide == {}

    # The section swaps itself in again every five seconds, and only it.
    page.evaluate("document.getElementById('health').dataset.old = 'yes'")
    page.wait_for_function("!document.getElementById('health').dataset.old", timeout=12_000)
    expect(page.locator("#health svg.traffic-chart")).to_have_count(3)
    expect(page.locator("#stopped-banner")).to_contain_text("staging is stopped.")
