"""Hosts and which hosts an environment runs on: checked (engine URLs, addresses), for
superusers only, audited, through the service, the API, `manage.py addhost` and the admin."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from audit.models import AuditAction, AuditEntry
from releases.hosts import (
    HostRefused,
    address_problem,
    engine_url_problem,
    environment_hosts_set,
    host_save,
)
from releases.models import Deployment, Environment, Host
from releases.services import local_host
from tests.factories import make_environment, make_project, make_release

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "",
        "unix:///run/docker.sock",
        "ssh://deploy@10.0.0.11",
        "ssh://deploy@web-1.example:2222",
        "tcp://10.0.0.12:2376",
    ],
)
def test_engine_urls_dockyard_can_reach_are_accepted(url: str) -> None:
    assert engine_url_problem(url) == ""


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.0.0.1:2375", "must start with unix://, ssh:// or tcp://"),
        ("tcp://10.0.0.1", "needs a port (Docker's TLS port is 2376)"),
        ("ssh://", "names no host"),
        ("unix://docker.sock", "names no socket path"),
        ("ssh://deploy@web-1/var/run", "has a path or query"),
    ],
)
def test_an_engine_url_dockyard_cannot_use_is_refused_saying_why(url: str, problem: str) -> None:
    assert problem in engine_url_problem(url)
    assert repr(url) in engine_url_problem(url)


@pytest.mark.parametrize(
    ("address", "problem"),
    [("web-1", "is not an IP address"), ("0.0.0.0", "is not one address"), ("", "not an IP")],
)
def test_an_address_apps_cannot_listen_on_is_refused(address: str, problem: str) -> None:
    assert problem in address_problem(address)


def test_adding_and_changing_a_host_is_audited_with_what_changed() -> None:
    host, added = host_save(name="web-1", engine_url="ssh://deploy@10.0.0.11", address="10.0.0.11")
    same, added_again = host_save(
        name="web-1", engine_url="tcp://10.0.0.11:2376", address="10.0.0.11"
    )

    assert (added, added_again, same.pk) == (True, False, host.pk)
    assert same.engine_url == "tcp://10.0.0.11:2376"
    [change, addition] = AuditEntry.objects.filter(target_type="host")
    assert addition.action == AuditAction.HOST_ADDED
    assert change.action == AuditAction.HOST_CHANGED
    assert change.detail["before"]["engine_url"] == "ssh://deploy@10.0.0.11"
    assert change.detail["after"]["engine_url"] == "tcp://10.0.0.11:2376"


def test_an_environment_gets_its_hosts_audited_and_never_two_on_one_address() -> None:
    environment = make_environment(make_project(), "production")
    one = host_save(name="web-1", engine_url="", address="10.0.0.11")[0]
    two = host_save(name="web-2", engine_url="", address="10.0.0.12")[0]
    clash = host_save(name="web-3", engine_url="", address="10.0.0.12")[0]

    environment_hosts_set(environment=environment, hosts=[one, two], max_parallel=1)

    assert sorted(environment.hosts.values_list("name", flat=True)) == ["web-1", "web-2"]
    assert environment.max_parallel == 1
    entry = AuditEntry.objects.get(action=AuditAction.ENVIRONMENT_HOSTS_CHANGED)
    assert entry.detail["before"]["hosts"] == ["local"]
    assert entry.detail["after"] == {"hosts": ["web-1", "web-2"], "max_parallel": 1}
    with pytest.raises(HostRefused, match=r"web-2 and web-3 share the address 10\.0\.0\.12"):
        environment_hosts_set(environment=environment, hosts=[two, clash], max_parallel=None)
    with pytest.raises(HostRefused, match="needs at least one host"):
        environment_hosts_set(environment=environment, hosts=[], max_parallel=None)


def test_hosts_cannot_change_under_a_deployment() -> None:
    environment = make_environment(make_project(), "production")
    Deployment.objects.create(
        environment=environment,
        release=make_release(environment.project, 1),
        kind="deploy",
        status="rolling",
        slot="blue",
    )
    other = host_save(name="web-1", engine_url="", address="10.0.0.11")[0]

    with pytest.raises(HostRefused, match="is being deployed to"):
        environment_hosts_set(environment=environment, hosts=[other], max_parallel=None)
    with pytest.raises(HostRefused, match="local is being deployed to"):
        host_save(name="local", engine_url="ssh://deploy@10.0.0.9", address="10.0.0.9")


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


def test_superusers_add_hosts_and_choose_an_environments_hosts_through_the_api() -> None:
    root = api_as(User.objects.create_superuser("root"))
    environment = make_environment(make_project(), "production")

    added = root.post(
        "/api/v1/hosts/",
        {"name": "web-1", "engine_url": "ssh://deploy@10.0.0.11", "address": "10.0.0.11"},
        format="json",
    )
    chosen = root.patch(
        f"/api/v1/environments/{environment.pk}/",
        {"hosts": ["local", "web-1"], "max_parallel": 1},
        format="json",
    )

    assert added.status_code == 201, added.json()
    assert added.json()["engine_url"] == "ssh://deploy@10.0.0.11"
    assert chosen.status_code == 200, chosen.json()
    body = chosen.json()
    assert body["hosts"] == ["local", "web-1"] and body["max_parallel"] == 1
    assert body["urls"] == [
        f"http://{local_host().address}:{environment.frontend_port}/",
        f"http://10.0.0.11:{environment.frontend_port}/",
    ]


def test_the_api_refuses_hosts_to_operators_and_bad_engine_urls_by_name() -> None:
    operator = api_as(User.objects.create_user("ops", is_staff=True))
    root = api_as(User.objects.create_superuser("root"))
    environment = make_environment(make_project(), "production")

    refused = operator.post(
        "/api/v1/hosts/", {"name": "web-1", "address": "10.0.0.11"}, format="json"
    )
    not_theirs = operator.patch(
        f"/api/v1/environments/{environment.pk}/", {"hosts": ["local"]}, format="json"
    )
    bad = root.post(
        "/api/v1/hosts/",
        {"name": "web-1", "engine_url": "http://10.0.0.11:2375", "address": "10.0.0.11"},
        format="json",
    )
    unknown = root.patch(
        f"/api/v1/environments/{environment.pk}/", {"hosts": ["nowhere"]}, format="json"
    )

    assert refused.status_code == not_theirs.status_code == 403
    assert "only superusers may add hosts" in refused.json()["error"]["message"]
    assert bad.status_code == 400
    assert "'http://10.0.0.11:2375' must start with unix://" in bad.json()["error"]["message"]
    assert unknown.status_code == 400
    assert "no host named nowhere" in unknown.json()["error"]["message"]
    assert not Host.objects.filter(name="web-1").exists()


def test_manage_py_addhost_adds_a_host_and_puts_it_in_an_environment() -> None:
    environment = make_environment(make_project(slug="shop"), "production")
    out = StringIO()

    call_command(
        "addhost",
        "web-1",
        "--engine",
        "ssh://deploy@10.0.0.11",
        "--address",
        "10.0.0.11",
        "--environment",
        "shop/production",
        stdout=out,
    )

    assert "host web-1 added: engine ssh://deploy@10.0.0.11, apps on 10.0.0.11" in out.getvalue()
    assert "shop/production runs on local, web-1" in out.getvalue()
    assert Environment.objects.get(pk=environment.pk).hosts.count() == 2
    assert AuditEntry.objects.filter(action=AuditAction.HOST_ADDED, actor__startswith="cli:")
    with pytest.raises(CommandError, match="'web-2' is not an IP address"):
        call_command("addhost", "bad", "--address", "web-2")
    with pytest.raises(CommandError, match="no environment 'shop/staging'"):
        call_command("addhost", "web-2", "--address", "10.0.0.12", "--environment", "shop/staging")


def test_in_the_admin_only_superusers_touch_hosts_and_their_edits_are_audited(
    client: Client,
) -> None:
    client.force_login(User.objects.create_user("ops", is_staff=True, is_superuser=False))
    assert client.get("/admin/releases/host/add/").status_code == 403

    client.force_login(User.objects.create_superuser("root"))
    refused = client.post(
        "/admin/releases/host/add/",
        {"name": "web-1", "engine_url": "tcp://10.0.0.11", "address": "10.0.0.11"},
    )
    added = client.post(
        "/admin/releases/host/add/",
        {"name": "web-1", "engine_url": "tcp://10.0.0.11:2376", "address": "10.0.0.11"},
    )

    assert "needs a port" in refused.content.decode()
    assert added.status_code == 302
    entry = AuditEntry.objects.get(action=AuditAction.HOST_ADDED)
    assert entry.detail["engine_url"] == "tcp://10.0.0.11:2376"
    assert entry.actor == "admin:root"
