"""The environment page's health (traffic, banners, the watch) and its restart, stop, start and
scale: a confirmation first, and only for deployers."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from releases.models import Deployment, Environment, Release
from releases.services import local_host
from tests.factories import (
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
    make_traffic_sample,
)

pytestmark = pytest.mark.django_db

PAGE = "/projects/web/environments/production/"


@pytest.fixture
def production() -> Environment:
    environment = make_environment(make_project(slug="web"), "production")
    make_succeeded_deployment(environment, make_release(environment.project, 41))
    make_succeeded_deployment(environment, make_release(environment.project, 42), live=True)
    environment.deployers.add(User.objects.create_user("release-manager", is_staff=True))
    return environment


@pytest.fixture
def deployer(client: Client, production: Environment) -> Client:
    client.force_login(User.objects.get(username="release-manager"))
    return client


def release(environment: Environment, number: int) -> Release:
    return Release.objects.get(project=environment.project, number=number)


def section(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found is not None, f"no #{element_id} on the page"
    return found[2]


def text_of(html: str) -> str:
    words = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return re.sub(r" ([,.:;])", r"\1", words)


def test_the_health_section_sums_the_serving_releases_last_five_minutes(
    deployer: Client, production: Environment
) -> None:
    now = timezone.now()
    for minutes_ago in (1, 2, 3, 4):
        make_traffic_sample(
            production,
            release(production, 42),
            started_at=now - timedelta(minutes=minutes_ago, seconds=30),
            seconds=60,
            statuses={200: 117, 500: 3},
            total_ms=80,
        )
    page = deployer.get(PAGE).content.decode()
    figures = text_of(section(page, "health"))
    assert "Release 42, last 5 minutes:" in figures
    assert "Requests 2/s" in figures
    assert "Errors (5xx) 2.5%" in figures
    assert re.search(r"p95 response [0-9.]+ ms", figures)


def test_with_no_requests_the_health_section_says_so_and_draws_empty_charts(
    deployer: Client,
) -> None:
    page = deployer.get(PAGE).content.decode()
    assert "No traffic to release 42 in the last 5 minutes." in text_of(section(page, "health-now"))
    charts = re.findall(r'<svg [^>]*role="img"', page)
    assert len(charts) == 3
    assert "no requests in this span" in page


def test_the_charts_have_a_line_per_release_and_the_deployments_marked(
    deployer: Client, production: Environment
) -> None:
    now = timezone.now()
    for number, minutes_ago in ((41, 20), (42, 5)):
        make_traffic_sample(
            production,
            release(production, number),
            started_at=now - timedelta(minutes=minutes_ago),
            seconds=60,
            statuses={200: 60},
        )
    page = deployer.get(PAGE).content.decode()
    requests_chart = section(page, "health").split('class="chart chart-requests"')[1]
    requests_chart = requests_chart.split("</figure>")[0]
    assert ">release 41</text>" in requests_chart and ">release 42</text>" in requests_chart
    assert requests_chart.count('class="deployment-mark"') == 2
    assert ">deploy 42</text>" in requests_chart


def test_the_section_refreshes_alone_every_five_seconds_keeping_its_span(
    deployer: Client,
) -> None:
    page = deployer.get(PAGE + "?minutes=360").content.decode()
    assert (
        'hx-get="/projects/web/environments/production/health/?minutes=360" '
        'hx-trigger="every 5s" hx-swap="outerHTML"'
    ) in page
    fragment = deployer.get("/projects/web/environments/production/health/?minutes=360")
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="health"') or '<section id="health"' in body
    assert "<html" not in body and "History" not in body
    assert 'href="?minutes=360" aria-current="true"' in body


def test_a_span_the_page_does_not_offer_falls_back_to_an_hour(deployer: Client) -> None:
    for asked in ("7", "abc", "²", "99999999999"):
        body = deployer.get(f"/projects/web/environments/production/health/?minutes={asked}")
        assert 'href="?minutes=60" aria-current="true"' in body.content.decode()


def test_a_stopped_environment_and_paused_auto_deploys_have_banners_with_the_reason(
    deployer: Client, production: Environment
) -> None:
    Environment.objects.filter(pk=production.pk).update(
        stopped=True, auto_deploy_paused="the watch of deployment 7 saw <b>release 42</b>"
    )
    page = deployer.get(PAGE).content.decode()
    assert "production is stopped." in text_of(section(page, "stopped-banner"))
    paused = section(page, "paused-banner")
    assert "the watch of deployment 7 saw &lt;b&gt;release 42&lt;/b&gt;" in paused
    # Stopped: Start instead of Stop, and nothing that its service would refuse.
    actions = section(page, "environment")
    assert 'id="start"' in actions
    assert (
        'id="stop"' not in actions and 'id="restart"' not in actions and 'id="scale"' not in actions
    )


def test_a_watch_under_way_says_until_when_and_the_requests_so_far(
    deployer: Client, production: Environment
) -> None:
    watched = Deployment.objects.get(release__number=42)
    until = timezone.now() + timedelta(minutes=2)
    Deployment.objects.filter(pk=watched.pk).update(watch_state="watching", watch_until=until)
    make_traffic_sample(
        production, release(production, 42), started_at=timezone.now(), statuses={200: 117, 503: 3}
    )
    watch = text_of(section(deployer.get(PAGE).content.decode(), "watch"))
    assert (
        f"is watched until {until.strftime('%H:%M:%S')} UTC: 3 of 120 requests 5xx so far" in watch
    )


def test_a_watch_that_rolled_back_says_why_and_the_history_shows_each_outcome(
    deployer: Client, production: Environment
) -> None:
    Deployment.objects.filter(release__number=41).update(
        watch_state="passed", watch_detail="0 of 80 requests answered 5xx"
    )
    Deployment.objects.filter(release__number=42).update(
        watch_state="rolled_back", watch_detail="30 of 100 requests answered 5xx"
    )
    page = deployer.get(PAGE).content.decode()
    assert text_of(section(page, "watch")) == (
        "Release 42 was rolled back by its watch: 30 of 100 requests answered 5xx."
    )
    outcomes = [text_of(o) for o in re.findall(r'<p class="watch-outcome[^"]*">(.*?)</p>', page)]
    assert outcomes == [
        "watch rolled back: 30 of 100 requests answered 5xx",
        "watch passed: 0 of 80 requests answered 5xx",
    ]


def test_a_viewer_sees_the_health_but_no_operate_buttons_and_cannot_operate(
    client: Client, production: Environment
) -> None:
    client.force_login(User.objects.create_user("viewer"))
    page = client.get(PAGE).content.decode()
    assert 'id="health"' in page
    assert "Restart…" not in page and "Stop…" not in page and "Scale…" not in page
    for kind in ("restart", "stop", "start", "scale"):
        assert client.get(f"{PAGE}{kind}/").status_code == 403
        assert client.post(f"{PAGE}{kind}/", {"confirm": "yes", "replicas": "2"}).status_code == 403
    assert not Deployment.objects.exclude(status="succeeded").exists()


def test_a_restart_says_what_it_will_do_and_happens_once_confirmed(
    deployer: Client, production: Environment
) -> None:
    page = deployer.get(PAGE).content.decode()
    assert 'href="/projects/web/environments/production/restart/">Restart…</a>' in page
    confirm = text_of(section(deployer.get(f"{PAGE}restart/").content.decode(), "confirmation"))
    assert "This will restart release 42 in production, one host at a time" in confirm
    assert f"Hosts local {local_host().address}" in confirm and "1 per host" in confirm
    assert not Deployment.objects.filter(kind="restart").exists()

    answer = deployer.post(f"{PAGE}restart/", {"confirm": "yes"})

    assert answer.status_code == 302 and answer["Location"] == PAGE
    restart = Deployment.objects.get(kind="restart")
    assert (restart.status, restart.release.number) == ("queued", 42)


def test_a_stop_warns_of_the_503s_and_a_start_runs_the_release_again(
    deployer: Client, production: Environment
) -> None:
    confirm = text_of(section(deployer.get(f"{PAGE}stop/").content.decode(), "confirmation"))
    assert "its address answers 503 Service Unavailable" in confirm
    deployer.post(f"{PAGE}stop/", {"confirm": "yes"})
    stop = Deployment.objects.get(kind="stop")
    # The executor would stop it; here the stop is made to have happened.
    Deployment.objects.filter(pk=stop.pk).update(status="succeeded", finished_at=timezone.now())
    Environment.objects.filter(pk=production.pk).update(stopped=True)

    confirm = text_of(section(deployer.get(f"{PAGE}start/").content.decode(), "confirmation"))
    assert "This will start production again: release 42 in fresh containers" in confirm
    deployer.post(f"{PAGE}start/", {"confirm": "yes"})
    assert Deployment.objects.get(kind="start").status == "queued"


def test_a_refused_operation_comes_back_as_a_message(deployer: Client) -> None:
    answer = deployer.post(f"{PAGE}start/", {"confirm": "yes"}, follow=True)
    assert "production is running; restart it instead" in answer.content.decode()
    assert not Deployment.objects.filter(kind="start").exists()


def test_scaling_asks_how_many_says_what_it_means_then_scales(
    deployer: Client, production: Environment
) -> None:
    page = deployer.get(PAGE).content.decode()
    scale_form = section(page, "scale")
    assert 'name="replicas" value="1" min="1" max="16"' in scale_form
    chooser = deployer.get(f"{PAGE}scale/").content.decode()
    assert 'id="scale-choose"' in chooser and 'id="confirmation"' not in chooser

    confirm = text_of(
        section(deployer.get(f"{PAGE}scale/?replicas=3").content.decode(), "confirmation")
    )
    assert "This will run 3 containers of release 42 on each host of production (now 1)" in confirm
    deployer.post(f"{PAGE}scale/", {"replicas": "3", "confirm": "yes"})

    scale = Deployment.objects.get(kind="scale")
    assert scale.status == "queued"
    assert Environment.objects.get(pk=production.pk).replicas == 3


@pytest.mark.parametrize("asked", ["0", "17", "two", "²"])
def test_a_number_of_replicas_out_of_range_is_refused_before_and_after_confirming(
    deployer: Client, asked: str
) -> None:
    chooser = deployer.get(f"{PAGE}scale/", {"replicas": asked}).content.decode()
    assert "replicas per host must be a whole number from 1 to 16" in text_of(
        section(chooser, "problem")
    )
    answer = deployer.post(f"{PAGE}scale/", {"replicas": asked, "confirm": "yes"}, follow=True)
    assert "replicas must be" in answer.content.decode()
    assert not Deployment.objects.filter(kind="scale").exists()


def test_the_history_names_the_new_kinds(deployer: Client, production: Environment) -> None:
    for kind in ("restart", "stop", "start", "scale"):
        Deployment.objects.create(
            environment=production,
            release=release(production, 42),
            kind=kind,
            status="succeeded",
            slot="green",
            replicas=4,
            finished_at=timezone.now(),
        )
    page = deployer.get(PAGE).content.decode()
    kinds = re.findall(r'<td data-label="What">(.*?)</td>', page)
    assert kinds[:4] == ["Scale to 4 per host", "Start", "Stop", "Restart"]


def test_the_pages_own_refresh_during_a_deployment_leaves_the_health_section_out(
    deployer: Client,
) -> None:
    # htmx takes only #environment from it; the health section refreshes itself.
    page = deployer.get(PAGE, headers={"HX-Request": "true"}).content.decode()
    assert 'id="environment"' in page and 'id="health"' not in page
