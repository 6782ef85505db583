"""The environment page's promote and rollback: a confirmation first, and only for deployers."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from pipelines.services import run_create
from releases.models import Deployment, DeploymentEvent, Environment, HostDeployment, Release
from releases.services import local_host
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def release(project: object, number: int) -> Release:
    sha = f"{number}" * 40
    run = run_create(project=project, ref="refs/heads/main", commit_sha=sha, trigger="webhook")
    return Release.objects.create(
        project=project,
        number=number,
        run=run,
        commit_sha=sha,
        image=f"127.0.0.1:5000/web@sha256:{str(number) * 64}",
        deploy_config={},
    )


def deployed(environment: Environment, what: Release) -> None:
    Deployment.objects.create(
        environment=environment,
        release=what,
        kind="deploy",
        status="succeeded",
        slot="blue",
        finished_at=timezone.now(),
    )


@pytest.fixture
def web() -> dict[str, object]:
    project = make_project(slug="web")
    staging = Environment.objects.create(
        project=project, name="staging", frontend_port=19501, blue_port=19502, green_port=19503
    )
    production = Environment.objects.create(
        project=project,
        name="production",
        frontend_port=19504,
        blue_port=19505,
        green_port=19506,
        after=staging,
    )
    for environment in (staging, production):
        environment.hosts.add(local_host())
    one, two, three = release(project, 1), release(project, 2), release(project, 3)
    for passed in (one, two):
        deployed(staging, passed)
    deployed(production, one)
    deployed(production, two)
    Environment.objects.filter(pk=production.pk).update(current_release=two, live_slot="green")
    production.deployers.add(User.objects.create_user("release-manager", is_staff=True))
    return {"production": production, "three": three}


def test_a_viewer_sees_the_history_but_no_buttons_and_cannot_post(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.create_user("viewer"))
    page = client.get("/projects/web/environments/production/").content.decode()
    assert "release 2" in page and "History" in page
    assert "Promote" not in page and "Roll back" not in page
    assert client.get("/projects/web/environments/production/promote/").status_code == 403
    assert client.post("/projects/web/environments/production/rollback/").status_code == 403


def test_staff_who_are_not_production_deployers_may_not_promote_production(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.create_user("developer", is_staff=True))
    assert client.get("/projects/web/environments/production/promote/").status_code == 403


def test_promotion_offers_only_releases_that_passed_staging_and_says_what_will_happen(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.get(username="release-manager"))
    choose = client.get("/projects/web/environments/production/promote/").content.decode()
    assert 'value="2"' in choose and 'value="1"' in choose
    assert 'value="3"' not in choose  # release 3 never succeeded in staging

    confirm = client.get("/projects/web/environments/production/promote/?release=1")
    text = confirm.content.decode()
    assert "from <strong>release 2</strong>" in text and "to <strong>release 1</strong>" in text
    assert "1" * 40 in text and "sha256:" + "1" * 64 in text
    assert not Deployment.objects.exclude(status="succeeded").exists()

    client.post(
        "/projects/web/environments/production/promote/", {"release": "1", "confirm": "yes"}
    )
    queued = Deployment.objects.get(status="queued")
    assert (queued.release.number, queued.kind, queued.previous_release.number) == (
        1,
        "promote",
        2,
    )


def test_a_release_that_did_not_pass_staging_cannot_be_forced_through_the_form(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.get(username="release-manager"))
    client.post(
        "/projects/web/environments/production/promote/", {"release": "3", "confirm": "yes"}
    )
    assert not Deployment.objects.filter(status="queued").exists()


def test_rollback_confirms_from_which_release_to_which(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.get(username="release-manager"))
    page = client.get("/projects/web/environments/production/").content.decode()
    assert "Roll back to release 1" in page
    confirm = client.get("/projects/web/environments/production/rollback/").content.decode()
    assert "from <strong>release 2</strong> to <strong>release 1</strong>" in confirm
    hosts = re.search(r'<table class="cards" id="rollback-hosts">(.*?)</table>', confirm, re.S)[1]
    assert "<strong>local</strong>" in hosts and "release 2" in hosts and "release 1" in hosts
    client.post("/projects/web/environments/production/rollback/", {"confirm": "yes"})
    rollback = Deployment.objects.get(status="queued")
    assert (rollback.kind, rollback.release.number) == ("rollback", 1)


def rolled_back(environment: Environment, what: Release, away_from: Release) -> None:
    Deployment.objects.create(
        environment=environment,
        release=what,
        previous_release=away_from,
        kind="rollback",
        status="succeeded",
        slot="blue",
        finished_at=timezone.now(),
    )
    Environment.objects.filter(pk=environment.pk).update(current_release=what)


def test_after_rolling_back_from_3_to_2_the_page_offers_release_1_never_3(
    client: Client, web: dict[str, object]
) -> None:
    production = web["production"]
    assert isinstance(production, Environment)
    three = web["three"]
    assert isinstance(three, Release)
    two = Release.objects.get(project=production.project, number=2)
    deployed(production, three)
    rolled_back(production, two, away_from=three)
    client.force_login(User.objects.get(username="release-manager"))

    page = client.get("/projects/web/environments/production/").content.decode()

    assert "Roll back to release 1…" in page
    assert "Roll back to release 3" not in page
    picker = client.get("/projects/web/environments/production/rollback/").content.decode()
    assert "from <strong>release 2</strong> to <strong>release 1</strong>" in picker
    assert 'value="3"' not in picker


def test_the_rollback_target_can_be_picked_among_the_releases_that_served_before(
    client: Client, web: dict[str, object]
) -> None:
    production = web["production"]
    three = web["three"]
    assert isinstance(production, Environment) and isinstance(three, Release)
    deployed(production, three)
    Environment.objects.filter(pk=production.pk).update(current_release=three)
    client.force_login(User.objects.get(username="release-manager"))

    picker = client.get("/projects/web/environments/production/rollback/").content.decode()
    options = re.findall(r'<option value="(\d+)"( selected)?>', picker)
    assert options == [("2", " selected"), ("1", "")]
    assert "(served before the current one)" in picker

    chosen = client.get(
        "/projects/web/environments/production/rollback/?release=1"
    ).content.decode()
    assert "from <strong>release 3</strong> to <strong>release 1</strong>" in chosen
    assert '<input type="hidden" name="release" value="1">' in chosen
    refused = client.get(
        "/projects/web/environments/production/rollback/?release=3"
    ).content.decode()
    assert 'id="confirmation"' not in refused and "not one production can roll back to" in refused

    client.post(
        "/projects/web/environments/production/rollback/", {"release": "1", "confirm": "yes"}
    )
    rollback = Deployment.objects.get(status="queued")
    assert (rollback.kind, rollback.release.number, rollback.previous_release.number) == (
        "rollback",
        1,
        3,
    )


def test_a_deployment_under_way_shows_its_steps_as_they_happen(
    client: Client, web: dict[str, object]
) -> None:
    production = web["production"]
    assert isinstance(production, Environment)
    one = Release.objects.get(project=production.project, number=1)
    deployment = Deployment.objects.create(
        environment=production, release=one, kind="rollback", status="rolling", slot="blue"
    )
    host = local_host()
    HostDeployment.objects.create(
        deployment=deployment, host=host, position=0, batch=0, status="checking"
    )
    started = timezone.now() - timedelta(seconds=9)
    for offset, (on, before, after) in enumerate(
        [
            (None, "", "queued"),
            (None, "queued", "preparing"),
            (None, "preparing", "rolling"),
            (host, "waiting", "starting"),
            (host, "starting", "checking"),
        ]
    ):
        event = DeploymentEvent.objects.create(
            deployment=deployment,
            host=on,
            from_status=before,
            to_status=after,
            detail=f"now {after}",
        )
        DeploymentEvent.objects.filter(pk=event.pk).update(
            at=started + timedelta(seconds=2 * offset)
        )
    client.force_login(User.objects.create_user("viewer"))

    page = client.get("/projects/web/environments/production/").content.decode()

    active = re.search(
        r'<section class="confirm" id="active-deployment">(.*?)</section>', page, re.S
    )[1]
    steps = re.findall(
        r'<tr class="step step-(\w+)">\s*<td><span class="status status-\w+">(\w+)</span>', active
    )
    assert steps == [
        ("done", "queued"),
        ("done", "preparing"),
        ("current", "rolling"),
        ("waiting", "finishing"),
        ("waiting", "succeeded"),
    ]
    # Each host's part with its own steps: here the one host, being checked.
    [host_row] = re.findall(r'<tr class="host host-checking">(.*?)</tr>', active, re.S)
    assert "<strong>local</strong>" in host_row
    assert re.findall(r'class="host-step step-(\w+)"[^>]*>(\w+)', host_row) == [
        ("done", "starting"),
        ("current", "checking"),
    ]
    assert "<td>2.0 s</td>" in active and "now checking" in host_row
    assert 'hx-trigger="every 1s"' in page


def test_the_history_links_each_release_to_its_run_and_gives_times_in_utc_saying_so(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.create_user("viewer"))
    page = client.get("/projects/web/environments/production/").content.decode()
    assert 'release 2 (<a href="/projects/web/runs/2/">run #2</a>)' in page
    utc_time = r'<time datetime="[^"]+Z" data-local-time="date">[-\d]{10} [:\d]{8} UTC</time>'
    assert re.search(utc_time, page)
    assert ".u" not in page and not re.search(r"\d\d:\d\d:\d\d\.\d{6}", page)


def test_the_project_page_links_releases_to_their_run_commit_and_the_environments_serving_them(
    client: Client, web: dict[str, object]
) -> None:
    client.force_login(User.objects.create_user("viewer"))
    page = client.get("/projects/web/").content.decode()
    row = re.search(r'<tr class="release-2">(.*?)</tr>', page, re.S)[1]
    assert '<a href="/projects/web/runs/2/">#2</a>' in row
    assert f'href="https://github.com/acme/web/commit/{"2" * 40}"' in row
    assert 'href="/projects/web/environments/production/"' in row
    assert (
        "environments/production"
        not in re.search(r'<tr class="release-1">(.*?)</tr>', page, re.S)[1]
    )
    assert re.search(r'<a href="http://[^"]+:19504/"><code>http://[^<]+:19504/</code></a>', page)
