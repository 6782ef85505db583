"""GET /api/v1/audit/: the audit log for operators, newest first, paged and filtered."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from audit.actors import Actor
from audit.models import AuditAction, AuditEntry
from audit.services import audit_record
from tests.factories import make_environment, make_project

pytestmark = pytest.mark.django_db


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ops", is_staff=True)


def test_only_operators_read_the_audit_log(operator: User) -> None:
    assert APIClient().get("/api/v1/audit/").status_code == 401
    refused = client_for(User.objects.create_user("viewer")).get("/api/v1/audit/")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"code": "permission_denied", "message": "only operators may read the audit log"}
    }
    assert client_for(operator).get("/api/v1/audit/").status_code == 200


def test_entries_come_newest_first_with_who_did_what_to_what(operator: User) -> None:
    production = make_environment(make_project(slug="web"), "production")
    AuditEntry.objects.all().delete()
    audit_record(
        action=AuditAction.DEPLOYERS_CHANGED,
        target=production,
        actor=Actor("admin:ops", operator),
        detail={"added": ["alice"]},
    )
    audit_record(
        action=AuditAction.ROLLBACK,
        target=production,
        actor=Actor("chat:slack:U1", operator),
        detail={"release": 41},
    )

    page = client_for(operator).get("/api/v1/audit/").json()

    assert page["count"] == 3  # and the token this test's client was given
    newest, deployers = page["results"][1], page["results"][2]
    assert page["results"][0]["action"] == "api_token.issued"
    assert {key: newest[key] for key in newest if key not in {"id", "at"}} == {
        "actor": "chat:slack:U1",
        "user": "ops",
        "action": "deployment.rollback",
        "target_type": "environment",
        "target_id": str(production.pk),
        "target_label": "web/production",
        "detail": {"release": 41},
    }
    assert deployers["detail"] == {"added": ["alice"]}


def test_the_log_is_filtered_by_action_target_and_actor(operator: User) -> None:
    project = make_project(slug="web")
    staging, production = make_environment(project, "staging"), make_environment(project, "prod")
    for target in (staging, production, production):
        audit_record(action=AuditAction.DEPLOY, target=target, actor=Actor("system"))
    audit_record(action=AuditAction.ROLLBACK, target=production, actor=Actor("chat:slack:U1"))
    api = client_for(operator)

    by_action = api.get("/api/v1/audit/?action=deployment.deploy").json()
    by_target = api.get(f"/api/v1/audit/?target_type=environment&target_id={production.pk}")
    by_actor = api.get("/api/v1/audit/?actor=chat:slack:U1").json()

    assert by_action["count"] == 3
    assert [entry["action"] for entry in by_target.json()["results"]] == [
        "deployment.rollback",
        "deployment.deploy",
        "deployment.deploy",
    ]
    assert [entry["action"] for entry in by_actor["results"]] == ["deployment.rollback"]
    unknown = api.get("/api/v1/audit/?action=deployment.frobnicate")
    assert unknown.status_code == 400
    assert "deployment.rollback" in unknown.json()["error"]["message"]


def test_the_log_is_paged_like_every_other_list(operator: User) -> None:
    project = make_project(slug="web")
    for _ in range(60):
        audit_record(action=AuditAction.PROJECT_SECRET_SET, target=project, detail={"name": "A"})
    api = client_for(operator)

    first = api.get("/api/v1/audit/?action=secret.set").json()
    second = api.get(first["next"]).json()

    assert (len(first["results"]), len(second["results"]), second["next"]) == (50, 10, None)
    assert api.get("/api/v1/audit/?page=0").status_code == 400


def test_the_audit_log_is_in_the_openapi_schema(operator: User) -> None:
    schema = client_for(operator).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/audit/"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert {"action", "target_type", "target_id", "actor", "page"} <= set(parameters)
    assert "deployment.promote" in parameters["action"]["schema"]["enum"]
    assert operation["tags"] == ["audit"]
