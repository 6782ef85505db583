"""Every deployment request and every secret change is audited, whichever way it came in."""

import hashlib
import hmac
import io
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.test import APIClient

from api.models import ChatIdentity
from api.tokens import api_token_issue
from audit.actors import cli_actor
from audit.models import AuditEntry
from pipelines.models import PipelineRun
from pipelines.tasks import release as release_from_run_task
from projects.models import Project, ProjectSecret
from projects.spec import parse_spec, spec_to_dict
from releases.models import Deployment, Environment
from tests.factories import (
    WEB_APP_SPEC,
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
)

pytestmark = pytest.mark.django_db

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
def web() -> dict[str, Any]:
    """web: staging, then production; releases 1 and 2 passed staging, 2 serves production."""
    project = make_project(slug="web")
    staging = make_environment(project, "staging")
    production = make_environment(project, "production", after=staging)
    one, two = make_release(project, 1), make_release(project, 2)
    make_succeeded_deployment(staging, one)
    make_succeeded_deployment(staging, two, live=True)
    make_succeeded_deployment(production, one)
    make_succeeded_deployment(production, two, live=True)
    return {"project": project, "staging": staging, "production": production}


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ops", is_staff=True)


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


def only_entry(action: str) -> AuditEntry:
    return AuditEntry.objects.get(action=action)


def everything_audited() -> str:
    return json.dumps(list(AuditEntry.objects.values()), default=str)


def test_a_deploy_through_the_api_is_audited_as_the_token_user(
    web: dict[str, Any], operator: User
) -> None:
    staging = web["staging"]
    answer = token_client(operator).post(
        f"/api/v1/environments/{staging.pk}/deploy/", {"release": 1}, format="json"
    )
    assert answer.status_code == 202

    entry = only_entry("deployment.deploy")
    assert (entry.actor, entry.actor_user) == ("api-token:ops", operator)
    assert (entry.target_type, entry.target_id, entry.target_label) == (
        "environment",
        str(staging.pk),
        "web/staging",
    )
    assert entry.detail == {
        "deployment": answer.json()["id"],
        "release": 1,
        "previous_release": 2,
        "image": f"127.0.0.1:5000/web@sha256:{1:064x}",
    }


def test_a_promotion_and_a_rollback_through_the_api_are_audited(
    web: dict[str, Any], operator: User
) -> None:
    production = web["production"]
    api = token_client(operator)
    promoted = api.post(f"/api/v1/environments/{production.pk}/promote/", {}, format="json")
    assert promoted.status_code == 202
    Deployment.objects.filter(pk=promoted.json()["id"]).update(status="failed")
    assert api.post(f"/api/v1/environments/{production.pk}/rollback/").status_code == 202

    promotion, rollback = only_entry("deployment.promote"), only_entry("deployment.rollback")
    assert promotion.actor == rollback.actor == "api-token:ops"
    assert (promotion.detail["release"], rollback.detail["release"]) == (2, 1)
    assert promotion.target_label == rollback.target_label == "web/production"


def test_a_refused_deployment_leaves_no_entry(web: dict[str, Any]) -> None:
    viewer = User.objects.create_user("viewer")
    answer = token_client(viewer).post(
        f"/api/v1/environments/{web['staging'].pk}/deploy/", {"release": 1}, format="json"
    )
    assert answer.status_code == 403
    assert not AuditEntry.objects.filter(action__startswith="deployment.").exists()


def test_a_chat_command_sent_through_the_api_is_audited_as_chat(
    web: dict[str, Any], operator: User
) -> None:
    answer = token_client(operator).post(
        "/api/v1/chatops/", {"text": "deploy web 1 to staging"}, format="json"
    )
    assert "queued" in answer.json()["text"]

    entry = only_entry("deployment.deploy")
    assert (entry.actor, entry.actor_user) == ("chat:api-token:ops", operator)


@override_settings(DOCKYARD_SLACK_SIGNING_SECRET=SLACK_SECRET)
def test_a_slack_rollback_is_audited_as_the_slack_user_and_their_linked_user(
    web: dict[str, Any],
) -> None:
    manager = User.objects.create_user("release-manager", is_staff=True)
    ChatIdentity.objects.create(user=manager, external_id="U024BE7LH")
    body = urlencode({"text": "rollback web production", "user_id": "U024BE7LH"}).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(
        SLACK_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    answer = APIClient().post(
        "/api/v1/chatops/slack/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
        HTTP_X_SLACK_SIGNATURE=f"v0={signature}",
    )
    assert answer.json()["response_type"] == "in_channel", answer.json()

    entry = only_entry("deployment.rollback")
    assert (entry.actor, entry.actor_user) == ("chat:slack:U024BE7LH", manager)
    assert entry.detail["release"] == 1


def test_a_promotion_from_the_environment_page_is_audited_as_the_web_user(
    web: dict[str, Any], client: Client
) -> None:
    manager = User.objects.create_user("release-manager")
    web["production"].deployers.add(manager)
    client.force_login(manager)
    client.post(
        "/projects/web/environments/production/promote/", {"release": "1", "confirm": "yes"}
    )

    entry = only_entry("deployment.promote")
    assert (entry.actor, entry.actor_user) == ("web:release-manager", manager)


def test_a_deploy_from_the_command_line_is_audited_as_the_shell_user(
    web: dict[str, Any], operator: User
) -> None:
    call_command("deploy", "web", "staging", "1", user="ops")

    entry = only_entry("deployment.deploy")
    assert (entry.actor, entry.actor_user) == (cli_actor().label, operator)


def test_an_auto_deploy_after_a_passing_run_is_audited_as_the_system() -> None:
    project = make_project(slug="auto")
    staging = make_environment(project, "staging")
    Environment.objects.filter(pk=staging.pk).update(auto_deploy_branches="main")
    make_environment(project, "production", after=staging)
    run = PipelineRun.objects.create(
        project=project,
        number=1,
        ref="refs/heads/main",
        commit_sha="f" * 40,
        trigger="webhook",
        status="succeeded",
        spec=spec_to_dict(parse_spec(WEB_APP_SPEC)),
        image_repository="127.0.0.1:5000/auto",
        image_digest="sha256:" + "f" * 64,
    )

    release_from_run_task(run.pk)

    entry = only_entry("deployment.auto")
    assert (entry.actor, entry.actor_user, entry.target_label) == ("system", None, "auto/staging")


def test_setting_a_secret_from_the_command_line_is_audited_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_project(slug="web")
    monkeypatch.setattr("sys.stdin", io.StringIO("npm_v4lue-that-must-not-leak\n"))
    call_command("setsecret", "web", "NPM_TOKEN")

    entry = only_entry("secret.set")
    assert entry.actor == cli_actor().label
    assert (entry.target_type, entry.target_label) == ("project", "web")
    assert entry.detail == {"name": "NPM_TOKEN", "created": True}
    assert ProjectSecret.objects.get(name="NPM_TOKEN").value == "npm_v4lue-that-must-not-leak"
    assert "npm_v4lue-that-must-not-leak" not in everything_audited()


def test_rotating_the_webhook_secret_through_the_api_is_audited_without_either_value(
    operator: User,
) -> None:
    project = make_project(slug="web")
    old = project.webhook_secret
    answer = token_client(operator).post("/api/v1/projects/web/rotate-secret/")
    new = answer.json()["webhook_secret"]

    entry = only_entry("webhook_secret.changed")
    assert (entry.actor, entry.actor_user, entry.target_label) == ("api-token:ops", operator, "web")
    assert entry.detail == {"set": True, "rotated": True}
    audited = everything_audited()
    assert old not in audited and new not in audited


def test_rotating_the_webhook_secret_on_the_project_page_is_audited(
    operator: User, client: Client
) -> None:
    make_project(slug="web")
    client.force_login(operator)
    client.post("/projects/web/rotate-secret/")

    assert only_entry("webhook_secret.changed").actor == "web:ops"
    assert Project.objects.get(slug="web").webhook_secret not in everything_audited()


def test_changing_the_forge_token_in_the_settings_is_audited_but_never_its_value(
    operator: User, client: Client
) -> None:
    make_project(slug="web")
    client.force_login(operator)
    form = {"branch_filter": "*", "tag_filter": "*"}

    client.post("/projects/web/settings/", {**form, "forge_token": "ghp_t0ken-that-must-not-leak"})
    client.post("/projects/web/settings/", form)  # empty: kept, so nothing to audit
    client.post("/projects/web/settings/", {**form, "forge_token_remove": "on"})

    entries = AuditEntry.objects.filter(action="forge_token.changed").order_by("at", "id")
    assert [(e.actor, e.target_label, e.detail) for e in entries] == [
        ("web:ops", "web", {"set": True}),
        ("web:ops", "web", {"set": False}),
    ]
    assert Project.objects.get(slug="web").forge_token == ""
    assert "ghp_t0ken-that-must-not-leak" not in everything_audited()


def test_deleting_a_secret_in_the_admin_is_audited_by_name() -> None:
    project = make_project(slug="web")
    secret = ProjectSecret.objects.create(project=project, name="API_KEY", value="k3y-value")
    admin = User.objects.create_superuser("root")
    client = Client()
    client.force_login(admin)
    client.post(f"/admin/projects/projectsecret/{secret.pk}/delete/", {"post": "yes"})

    entry = only_entry("secret.deleted")
    assert (entry.actor, entry.actor_user, entry.detail) == (
        "admin:root",
        admin,
        {"name": "API_KEY"},
    )
    assert "k3y-value" not in everything_audited()
