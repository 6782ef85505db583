"""An environment's traffic, and its restart, stop, start and scale, through the API: the same
access, answers and audit as promote and rollback."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from audit.models import AuditEntry
from releases.models import Deployment, Environment
from tests.factories import (
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
    make_traffic_sample,
)

pytestmark = pytest.mark.django_db


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


@pytest.fixture
def production() -> Environment:
    environment = make_environment(make_project(slug="web"), "production")
    make_succeeded_deployment(environment, make_release(environment.project, 42), live=True)
    environment.deployers.add(User.objects.create_user("release-manager", is_staff=True))
    return environment


@pytest.fixture
def deployer(production: Environment) -> APIClient:
    return client_for(User.objects.get(username="release-manager"))


@pytest.fixture
def viewer() -> APIClient:
    return client_for(User.objects.create_user("viewer"))


def test_anyone_signed_in_reads_the_traffic_per_step_release_and_deployment(
    viewer: APIClient, production: Environment
) -> None:
    release = production.current_release
    # A step of its own: 15 seconds from a whole quarter minute.
    started = (timezone.now() - timedelta(minutes=2)).replace(second=0, microsecond=0)
    make_traffic_sample(
        production, release, started_at=started, seconds=15, statuses={200: 141, 500: 9}
    )
    answer = viewer.get(f"/api/v1/environments/{production.pk}/traffic/?minutes=15")
    assert answer.status_code == 200, answer.content
    traffic = answer.json()
    assert (traffic["minutes"], traffic["step_seconds"], traffic["host"]) == (15, 15, None)
    assert len(traffic["total"]) == 60
    assert sum(point["requests"] for point in traffic["total"]) == 150
    [series] = traffic["releases"]
    assert series["releases"] == [42]
    busy = next(point for point in series["points"] if point["requests"])
    assert busy["error_rate"] == pytest.approx(0.06)
    assert busy["requests_per_second"] == pytest.approx(10.0)
    assert [(d["kind"], d["release"]) for d in traffic["deployments"]] == [("deploy", 42)]
    assert traffic["now"][0] | {"requests_per_second": None, "p50_ms": None, "p95_ms": None} == {
        "release": 42,
        "requests": 150,
        "responses_5xx": 9,
        "requests_per_second": None,
        "error_rate": 0.06,
        "p50_ms": None,
        "p95_ms": None,
    }
    assert traffic["serving_release"] == 42 and traffic["sampling"] is True


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("minutes=4", "minutes", "greater than or equal to 5"),
        ("minutes=20161", "minutes", "less than or equal to 20160"),
        ("minutes=an-hour", "minutes", "A valid integer is required."),
        ("host=elsewhere", "host", "production does not run on a host 'elsewhere'"),
    ],
)
def test_a_bad_traffic_parameter_is_a_400_naming_it(
    viewer: APIClient, production: Environment, query: str, field: str, message: str
) -> None:
    answer = viewer.get(f"/api/v1/environments/{production.pk}/traffic/?{query}")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == [field]
    assert message in error["message"]


def test_one_hosts_traffic_is_read_by_its_name(viewer: APIClient, production: Environment) -> None:
    host = production.hosts.get()
    answer = viewer.get(f"/api/v1/environments/{production.pk}/traffic/?host={host.name}")
    assert answer.status_code == 200 and answer.json()["host"] == host.name


@pytest.mark.parametrize("kind", ["restart", "stop"])
def test_a_deployer_restarts_or_stops_and_gets_the_deployment_like_a_rollback(
    deployer: APIClient, production: Environment, kind: str
) -> None:
    answer = deployer.post(f"/api/v1/environments/{production.pk}/{kind}/")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["kind"], body["status"], body["release"]) == (kind, "queued", 42)
    assert body["watch_state"] == "" and body["watch_until"] is None
    entry = AuditEntry.objects.get(action=f"deployment.{kind}")
    assert entry.actor == "api-token:release-manager"
    assert entry.detail["deployment"] == body["id"]


def test_a_stopped_environment_is_started_and_a_running_one_refused_with_a_409(
    deployer: APIClient, production: Environment
) -> None:
    refused = deployer.post(f"/api/v1/environments/{production.pk}/start/")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": {
            "code": "deployment_refused",
            "message": "production is running; restart it instead",
        }
    }
    Environment.objects.filter(pk=production.pk).update(stopped=True)
    started = deployer.post(f"/api/v1/environments/{production.pk}/start/")
    assert started.status_code == 202 and started.json()["kind"] == "start"


def test_scaling_takes_the_replicas_per_host_and_the_environment_shows_them(
    deployer: APIClient, production: Environment
) -> None:
    answer = deployer.post(
        f"/api/v1/environments/{production.pk}/scale/", {"replicas": 3}, format="json"
    )
    assert answer.status_code == 202, answer.content
    assert answer.json()["kind"] == "scale"
    environment = deployer.get(f"/api/v1/environments/{production.pk}/").json()
    assert (environment["replicas"], environment["stopped"], environment["auto_deploy_paused"]) == (
        3,
        False,
        "",
    )
    assert AuditEntry.objects.filter(action="deployment.scale").exists()


@pytest.mark.parametrize("body", [{}, {"replicas": 0}, {"replicas": 17}, {"replicas": "many"}])
def test_a_scale_without_a_good_number_is_a_400_naming_replicas(
    deployer: APIClient, production: Environment, body: dict[str, object]
) -> None:
    answer = deployer.post(f"/api/v1/environments/{production.pk}/scale/", body, format="json")
    assert answer.status_code == 400
    assert list(answer.json()["error"]["fields"]) == ["replicas"]
    assert not Deployment.objects.filter(kind="scale").exists()


@pytest.mark.parametrize("kind", ["restart", "stop", "start", "scale"])
def test_who_may_not_deploy_may_not_operate(
    viewer: APIClient, production: Environment, kind: str
) -> None:
    answer = viewer.post(
        f"/api/v1/environments/{production.pk}/{kind}/", {"replicas": 2}, format="json"
    )
    assert answer.status_code == 403
    assert answer.json() == {
        "error": {"code": "permission_denied", "message": "you may not deploy to production"}
    }
    assert not Deployment.objects.exclude(status="succeeded").exists()


def test_a_retried_restart_with_the_same_key_restarts_once(
    deployer: APIClient, production: Environment
) -> None:
    path = f"/api/v1/environments/{production.pk}/restart/"
    first = deployer.post(path, HTTP_IDEMPOTENCY_KEY="restart-1")
    again = deployer.post(path, HTTP_IDEMPOTENCY_KEY="restart-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    assert Deployment.objects.filter(kind="restart").count() == 1


def test_a_deployment_shows_its_watch_and_replicas(
    viewer: APIClient, production: Environment
) -> None:
    deployment = Deployment.objects.get(environment=production)
    Deployment.objects.filter(pk=deployment.pk).update(
        watch_state="rolled_back", watch_detail="30 of 100 requests answered 5xx", replicas=2
    )
    body = viewer.get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert (body["watch_state"], body["watch_detail"], body["replicas"]) == (
        "rolled_back",
        "30 of 100 requests answered 5xx",
        2,
    )


def test_the_schema_has_the_traffic_and_the_operations(viewer: APIClient) -> None:
    paths = viewer.get("/api/v1/schema/?format=json").json()["paths"]
    for action in ("traffic", "restart", "stop", "start", "scale"):
        assert f"/api/v1/environments/{{id}}/{action}/" in paths


def chat(client: APIClient, text: str) -> str:
    answer = client.post("/api/v1/chatops/", {"text": text}, format="json")
    assert answer.status_code == 200
    return str(answer.json()["text"])


def test_a_deployer_restarts_stops_and_starts_from_chat_and_it_is_audited_as_chat(
    deployer: APIClient, production: Environment
) -> None:
    link = "http://127.0.0.1:8000/projects/web/environments/production/"
    assert chat(deployer, "restart web production") == (
        f"restart of web production (release 42) queued — {link}"
    )
    entry = AuditEntry.objects.get(action="deployment.restart")
    assert entry.actor == "chat:api-token:release-manager"
    # One deployment at a time: the restart is still queued.
    assert chat(deployer, "stop web production").startswith("refused: production is busy")
    Deployment.objects.filter(kind="restart").update(status="succeeded")
    assert chat(deployer, "stop web production").startswith("stop of web production")
    Deployment.objects.filter(kind="stop").update(status="succeeded")
    Environment.objects.filter(pk=production.pk).update(stopped=True)
    assert chat(deployer, "start web production").startswith("start of web production")


def test_scaling_from_chat_says_how_many_per_host(
    deployer: APIClient, production: Environment
) -> None:
    assert chat(deployer, "scale web production to 3").startswith(
        "scale of web production to 3 containers per host (release 42) queued"
    )
    assert Environment.objects.get(pk=production.pk).replicas == 3
    Deployment.objects.filter(kind="scale").update(status="succeeded")
    assert chat(deployer, "scale web production 17") == (
        "refused: replicas must be from 1 to 16, not 17"
    )


def test_chat_refuses_an_operation_the_user_may_not_make(
    viewer: APIClient, production: Environment
) -> None:
    for text in ("restart web production", "stop web production", "scale web production 2"):
        assert chat(viewer, text) == (
            "refused: you may not deploy web to production (link your chat account?)"
        )
    assert not Deployment.objects.exclude(status="succeeded").exists()


def test_chat_refuses_a_start_of_a_running_environment_with_the_reason(
    deployer: APIClient, production: Environment
) -> None:
    assert chat(deployer, "start web production") == (
        "refused: production is running; restart it instead"
    )
