"""Permission changes are audited however they are made: the admin, a shell, a command."""

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.models import ChatIdentity
from api.tokens import api_token_issue
from audit.actors import acting_as, cli_actor
from audit.models import AuditEntry
from projects.models import Project
from tests.admin_pages import admin_form_data
from tests.conftest import suite_database_url
from tests.factories import make_environment, make_project

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root"))
    return client


def entries(action: str, **filters: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (entry.actor, entry.target_label, entry.detail)
        for entry in AuditEntry.objects.filter(action=action, **filters).order_by("at", "id")
    ]


def test_adding_and_removing_deployers_in_the_admin_is_audited(admin_client: Client) -> None:
    production = make_environment(make_project(slug="web"), "production")
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    url = f"/admin/releases/environment/{production.pk}/change/"

    added = admin_client.post(url, admin_form_data(admin_client, url, deployers=[alice.pk, bob.pk]))
    assert added.status_code == 302, added.context["adminform"].form.errors
    admin_client.post(url, admin_form_data(admin_client, url, deployers=[bob.pk]))

    assert entries("environment.deployers") == [
        ("admin:root", "web/production", {"added": ["alice", "bob"]}),
        ("admin:root", "web/production", {"removed": ["alice"]}),
    ]
    assert AuditEntry.objects.filter(actor_user__username="root").count() == 2


def test_deployers_changed_from_the_users_side_or_cleared_are_audited_per_environment() -> None:
    project = make_project(slug="web")
    staging, production = make_environment(project, "staging"), make_environment(project, "x")
    carol = User.objects.create_user("carol")

    with acting_as(cli_actor()):
        carol.environment_set.add(staging, production)
        staging.deployers.clear()

    shell = cli_actor().label
    assert entries("environment.deployers") == [
        (shell, "web/staging", {"added": ["carol"]}),
        (shell, "web/x", {"added": ["carol"]}),
        (shell, "web/staging", {"removed": ["carol"]}),
    ]


def test_making_a_user_staff_with_groups_and_permissions_in_the_admin_is_audited(
    admin_client: Client,
) -> None:
    dave = User.objects.create_user("dave")
    releasers = Group.objects.create(name="releasers")
    change_environment = Permission.objects.get(codename="change_environment")
    url = f"/admin/auth/user/{dave.pk}/change/"

    changed = admin_client.post(
        url,
        admin_form_data(
            admin_client,
            url,
            is_staff=True,
            groups=[releasers.pk],
            user_permissions=[change_environment.pk],
        ),
    )
    assert changed.status_code == 302, changed.context["adminform"].form.errors

    assert entries("user.flags", target_label="dave") == [
        ("admin:root", "dave", {"is_staff": {"from": False, "to": True}})
    ]
    assert entries("user.groups") == [("admin:root", "dave", {"added": ["releasers"]})]
    assert entries("user.permissions") == [
        ("admin:root", "dave", {"added": ["releases.change_environment"]})
    ]


def test_saving_a_user_without_changing_a_flag_records_nothing(admin_client: Client) -> None:
    erin = User.objects.create_user("erin", is_staff=True)
    AuditEntry.objects.all().delete()
    url = f"/admin/auth/user/{erin.pk}/change/"
    admin_client.post(url, admin_form_data(admin_client, url, first_name="Erin"))
    erin.last_login = erin.date_joined
    erin.save(update_fields=["last_login"])

    assert User.objects.get(pk=erin.pk).first_name == "Erin"
    assert not AuditEntry.objects.exists()


def test_deactivating_a_superuser_and_group_changes_from_a_shell_are_audited() -> None:
    frank = User.objects.create_superuser("frank")
    ops = Group.objects.create(name="ops")
    view_run = Permission.objects.get(codename="view_pipelinerun")

    frank.is_active = False
    frank.save()
    ops.user_set.add(frank)
    ops.permissions.add(view_run)

    assert entries("user.flags") == [
        (
            "system",
            "frank",
            {
                "is_staff": {"from": None, "to": True},
                "is_superuser": {"from": None, "to": True},
                "created": True,
            },
        ),
        ("system", "frank", {"is_active": {"from": True, "to": False}}),
    ]
    assert entries("user.groups") == [("system", "frank", {"added": ["ops"]})]
    assert entries("group.permissions") == [
        ("system", "ops", {"added": ["pipelines.view_pipelinerun"]})
    ]


def test_replacing_the_api_token_on_the_account_page_is_audited_without_the_key() -> None:
    grace = User.objects.create_user("grace")
    client = Client()
    client.force_login(grace)
    client.post("/account/token/")
    first = Token.objects.get(user=grace).key
    client.post("/account/token/")
    second = Token.objects.get(user=grace).key

    assert [(actor, target) for actor, target, _ in entries("api_token.issued")] == [
        ("web:grace", "grace"),
        ("web:grace", "grace"),
    ]
    assert [(actor, target) for actor, target, _ in entries("api_token.revoked")] == [
        ("web:grace", "grace")
    ]
    audited = str(list(AuditEntry.objects.values()))
    assert first not in audited and second not in audited


def test_revoking_a_token_in_the_admin_is_audited(admin_client: Client) -> None:
    heidi = User.objects.create_user("heidi")
    Token.objects.create(user=heidi)
    # DRF's admin names a token by its user's id, never by its key.
    admin_client.post(f"/admin/authtoken/tokenproxy/{heidi.pk}/delete/", {"post": "yes"})

    assert not Token.objects.filter(user=heidi).exists()
    assert entries("api_token.revoked") == [("admin:root", "heidi", {})]


def test_linking_a_slack_user_with_linkchat_is_audited_and_relinking_unlinks_first() -> None:
    ivan, judy = User.objects.create_user("ivan"), User.objects.create_user("judy")
    call_command("linkchat", "ivan", "U024BE7LH")
    call_command("linkchat", "ivan", "U024BE7LH")  # the same link again: nothing changes
    call_command("linkchat", "judy", "U024BE7LH")

    shell = cli_actor().label
    account = {"provider": "slack", "external_id": "U024BE7LH"}
    assert entries("chat_identity.linked") == [(shell, "ivan", account), (shell, "judy", account)]
    assert entries("chat_identity.unlinked") == [
        (shell, "ivan", {**account, "now_linked_to": "judy"})
    ]
    linked = AuditEntry.objects.filter(action="chat_identity.linked").order_by("id")
    assert [entry.target_id for entry in linked] == [str(ivan.pk), str(judy.pk)]


def test_a_token_made_in_the_admin_is_audited(admin_client: Client) -> None:
    ivy = User.objects.create_user("ivy")
    admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": ivy.pk})

    assert Token.objects.filter(user=ivy).exists()
    assert entries("api_token.issued") == [("admin:root", "ivy", {})]


def test_unlinking_a_chat_account_in_the_admin_is_audited(admin_client: Client) -> None:
    identity = ChatIdentity.objects.create(user=User.objects.create_user("ken"), external_id="U9")
    admin_client.post(f"/admin/api/chatidentity/{identity.pk}/delete/", {"post": "yes"})

    assert entries("chat_identity.unlinked") == [
        ("admin:root", "ken", {"provider": "slack", "external_id": "U9"})
    ]


@pytest.mark.django_db(transaction=True)
def test_commands_run_at_the_shell_are_audited_as_the_shell_user() -> None:
    """The real manage.py, in its own process, as an operator would type it."""
    User.objects.create_user("leo")
    environment = {
        **os.environ,
        "DATABASE_URL": suite_database_url(),
        "DOCKYARD_DB_CONN_MAX_AGE": "0",
        "DJANGO_SUPERUSER_PASSWORD": "a-long-enough-password-1",
    }

    def manage(*args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=environment,
            check=True,
            capture_output=True,
            timeout=60,
        )

    manage("createtoken", "leo")
    manage("createsuperuser", "--noinput", "--username", "mallory", "--email", "m@example.org")

    shell = f"cli:{getpass.getuser()}"
    assert entries("api_token.issued") == [(shell, "leo", {})]
    assert entries("user.flags") == [
        (
            shell,
            "mallory",
            {
                "is_staff": {"from": None, "to": True},
                "is_superuser": {"from": None, "to": True},
                "created": True,
            },
        )
    ]


def test_editing_a_projects_secrets_in_the_admin_is_audited_without_their_values(
    admin_client: Client,
) -> None:
    project = make_project(slug="web")
    url = f"/admin/projects/project/{project.pk}/change/"
    changed = admin_client.post(
        url,
        admin_form_data(
            admin_client, url, webhook_secret="n3w-webhook-secret", forge_token="ghp_n3w-token"
        ),
    )
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    # Saved again unchanged: nothing more to record.
    admin_client.post(url, admin_form_data(admin_client, url))

    assert entries("webhook_secret.changed") == [("admin:root", "web", {"set": True})]
    assert entries("forge_token.changed") == [("admin:root", "web", {"set": True})]
    audited = str(list(AuditEntry.objects.values()))
    assert "n3w-webhook-secret" not in audited and "ghp_n3w-token" not in audited


def test_the_audit_log_in_the_admin_can_be_read_but_not_changed(admin_client: Client) -> None:
    User.objects.create_user("nina", is_staff=True)
    entry = AuditEntry.objects.get(target_label="nina")

    listing = admin_client.get("/admin/audit/auditentry/")
    assert listing.status_code == 200 and "nina" in listing.content.decode()
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    admin_client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"actor": "someone-else"})
    assert AuditEntry.objects.get(pk=entry.pk).actor == "system"


def test_adding_a_project_through_the_api_is_audited_with_who_and_no_secret() -> None:
    operator = User.objects.create_user("ops", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=operator)}")

    added = api.post(
        "/api/v1/projects/",
        {"slug": "api-app", "repository_url": "https://github.com/acme/api-app.git"},
        format="json",
    )

    assert added.status_code == 201
    [(actor, label, detail)] = entries("project.created")
    assert (actor, label) == ("api-token:ops", "api-app")
    assert detail == {
        "repository": "https://github.com/acme/api-app.git",
        "forge": "github",
        "webhook_secret": True,
        "forge_token": False,
        "repository_credentials": False,
    }
    assert added.json()["webhook_secret"] not in str(list(AuditEntry.objects.values()))


def test_pointing_a_project_at_another_repository_and_deleting_it_in_the_admin_are_audited(
    admin_client: Client,
) -> None:
    project = make_project(slug="web", repository_url="https://github.com/acme/web.git")
    url = f"/admin/projects/project/{project.pk}/change/"
    moved_to = "https://deploy:hunter2-token@git.example.com/acme/web.git"

    changed = admin_client.post(url, admin_form_data(admin_client, url, repository_url=moved_to))
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    admin_client.post(f"/admin/projects/project/{project.pk}/delete/", {"post": "yes"})

    assert not Project.objects.filter(pk=project.pk).exists()
    [(actor, label, detail)] = entries("project.repository")
    assert (actor, label) == ("admin:root", "web")
    assert detail["from"] == "https://github.com/acme/web.git"
    # The credentials typed into the URL were moved out of it, kept apart and audited as such.
    assert detail["to"] == "https://git.example.com/acme/web.git"
    assert entries("repository_credentials.changed") == [("admin:root", "web", {"set": True})]
    assert entries("project.deleted") == [("admin:root", "web", {"repository": detail["to"]})]
    assert "hunter2-token" not in str(list(AuditEntry.objects.values()))
