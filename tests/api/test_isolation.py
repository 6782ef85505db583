"""What the API keeps and shows stays safe: no secret in stored replay answers, no repository
password to any reader, grants only from operators and audited, refs git refuses refused."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import IdempotentRequest
from api.tokens import api_token_issue
from audit.models import AuditAction, AuditEntry
from pipelines.models import PipelineRun
from projects.models import Project
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


@pytest.fixture
def operator() -> User:
    return User.objects.create_user("ops", is_staff=True)


@pytest.fixture
def viewer() -> User:
    return User.objects.create_user("viewer")


def stored_answers() -> str:
    """Every stored replay answer as the database holds it (what a dump would show)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT response FROM {IdempotentRequest._meta.db_table}")
        return "\n".join(str(row[0]) for row in cursor.fetchall())


def test_a_replayed_answer_keeps_its_secret_encrypted_at_rest(operator: User) -> None:
    api = client_for(operator)
    key = str(uuid.uuid4())
    body = {"slug": "api-app", "repository_url": "https://github.com/acme/api-app.git"}

    first = api.post("/api/v1/projects/", body, format="json", headers={"Idempotency-Key": key})
    rotated = api.post(
        "/api/v1/projects/api-app/rotate-secret/", headers={"Idempotency-Key": "rotate-1"}
    )
    replay = api.post("/api/v1/projects/", body, format="json", headers={"Idempotency-Key": key})

    assert first.status_code == 201
    secrets = [first.json()["webhook_secret"], rotated.json()["webhook_secret"]]
    stored = stored_answers()
    assert IdempotentRequest.objects.count() == 2
    for secret in secrets:
        assert secret not in stored
    assert "api-app" not in stored  # the whole answer is sealed, not only the secret
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


def test_repository_credentials_are_kept_apart_and_never_shown(
    operator: User, viewer: User
) -> None:
    created = client_for(operator).post(
        "/api/v1/projects/",
        {"slug": "private", "repository_url": "https://deploy:hunter2@git.example.com/acme/x.git"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    project = Project.objects.get(slug="private")
    assert project.repository_url == "https://git.example.com/acme/x.git"
    assert project.repository_credentials == "deploy:hunter2"

    for user in (viewer, operator):
        shown = client_for(user).get("/api/v1/projects/private/").json()
        assert shown["repository_url"] == "https://git.example.com/acme/x.git"
        assert shown["has_repository_credentials"] is True
        assert "hunter2" not in str(shown)
    assert "hunter2" not in created.content.decode()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT repository_url, repository_credentials FROM {Project._meta.db_table} "
            "WHERE slug = 'private'"
        )
        assert "hunter2" not in str(cursor.fetchone())


def test_the_project_page_shows_no_repository_password(client: Client, viewer: User) -> None:
    make_project(slug="private", repository_url="https://tok3n-value@git.example.com/acme/x.git")
    client.force_login(viewer)
    page = client.get("/projects/private/").content.decode()
    assert "git.example.com/acme/x.git" in page
    assert "tok3n-value" not in page


def test_an_operator_grants_a_repository_and_the_network_and_it_is_audited(
    operator: User, viewer: User
) -> None:
    make_project(slug="web")
    grant = {
        "publish_repositories": ["127.0.0.1:5000/shared/docs", " 127.0.0.1:5000/shared/docs "],
        "test_network_allowed": True,
    }

    refused = client_for(viewer).patch("/api/v1/projects/web/", grant, format="json")
    answer = client_for(operator).patch("/api/v1/projects/web/", grant, format="json")

    assert refused.status_code == 403
    assert answer.status_code == 200, answer.json()
    assert answer.json()["publish_repositories"] == ["127.0.0.1:5000/shared/docs"]
    assert answer.json()["test_network_allowed"] is True
    entry = AuditEntry.objects.get(action=AuditAction.PROJECT_PERMISSIONS_CHANGED)
    assert entry.actor == "api-token:ops"
    assert entry.detail == {
        "publish_repositories": {"from": "", "to": "127.0.0.1:5000/shared/docs"},
        "test_network_allowed": {"from": False, "to": True},
    }


@pytest.mark.parametrize(
    ("repositories", "message"),
    [
        (["Not A Repository"], "is not a lowercase image repository"),
        (["127.0.0.1:5000/web/sub"], "is inside the project's own namespace"),
    ],
)
def test_a_grant_that_names_no_other_repository_is_refused(
    operator: User, repositories: list[str], message: str
) -> None:
    make_project(slug="web")
    answer = client_for(operator).patch(
        "/api/v1/projects/web/", {"publish_repositories": repositories}, format="json"
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("ref", "problem"),
    [("../../x", "contains '..'"), ("-fx:y", "contains ':'"), ("-fx", "starts with '-'")],
)
def test_a_run_of_a_ref_git_refuses_is_refused_naming_it(
    operator: User, ref: str, problem: str
) -> None:
    make_project(slug="web")
    answer = client_for(operator).post(
        "/api/v1/runs/", {"project": "web", "ref": ref, "commit_sha": "c" * 40}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"ref {ref!r}: ")
    assert problem in answer.json()["error"]["message"]
    assert not PipelineRun.objects.exists()


def test_an_idempotency_key_is_forgotten_after_its_retention_and_expired_ones_are_deleted(
    operator: User,
) -> None:
    api = client_for(operator)
    body = {"slug": "kept-app", "repository_url": "https://github.com/acme/kept-app.git"}
    first = api.post("/api/v1/projects/", body, format="json", headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    other = User.objects.create_user("other", is_staff=True)
    for number in range(3):
        response = client_for(other).post(
            "/api/v1/projects/",
            {"slug": f"other-{number}", "repository_url": f"https://github.com/acme/o{number}.git"},
            format="json",
            headers={"Idempotency-Key": f"o{number}"},
        )
        assert response.status_code == 201
    # A day and more later (the test stands in for the passing of time).
    IdempotentRequest.objects.update(
        created_at=timezone.now()
        - timedelta(hours=settings.DOCKYARD_IDEMPOTENCY_RETENTION_HOURS + 1)
    )

    again = api.post("/api/v1/projects/", body, format="json", headers={"Idempotency-Key": "k1"})

    # A new request, not a replay: the project exists now, so it is refused as such.
    assert again.status_code == 400 and "Idempotent-Replayed" not in again.headers
    assert not IdempotentRequest.objects.filter(user=other).exists()
