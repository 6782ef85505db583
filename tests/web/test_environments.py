"""The environment page's promote and rollback: a confirmation first, and only for deployers."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from pipelines.services import run_create
from releases.models import Deployment, Environment, Release
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
    client.post("/projects/web/environments/production/rollback/", {"confirm": "yes"})
    rollback = Deployment.objects.get(status="queued")
    assert (rollback.kind, rollback.release.number) == ("rollback", 1)
