"""Secrets are ciphertext in the database and plain values in Python; keys rotate."""

from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from config.encrypted_fields import EncryptionKeyError, derived_key
from config.environment import env_fernet_keys
from projects.models import Project, ProjectSecret
from projects.selectors import project_secret_values
from projects.services import project_secret_rotate, project_secret_set
from tests.factories import make_project
from webhooks.models import NotificationEndpoint

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
WEBHOOK_SECRET = "webhook-secret-0123456789"
FORGE_TOKEN = "ghp_forgetoken0123456789"
NPM_TOKEN = "npm_0123456789abcdef"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"


def raw_value(table: str, column: str, pk: int) -> str:
    """What the database holds, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def project_with_every_secret() -> tuple[Project, ProjectSecret, NotificationEndpoint]:
    project = make_project(webhook_secret=WEBHOOK_SECRET, forge_token=FORGE_TOKEN)
    secret = project_secret_set(project=project, name="NPM_TOKEN", value=NPM_TOKEN)
    endpoint = NotificationEndpoint.objects.create(project=project, url=SLACK_URL)
    return project, secret, endpoint


@pytest.mark.django_db
def test_the_database_holds_ciphertext_and_the_orm_returns_the_values() -> None:
    project, secret, endpoint = project_with_every_secret()

    stored = {
        WEBHOOK_SECRET: raw_value("pipelines_project", "webhook_secret", project.pk),
        FORGE_TOKEN: raw_value("pipelines_project", "forge_token", project.pk),
        NPM_TOKEN: raw_value("pipelines_projectsecret", "value", secret.pk),
        SLACK_URL: raw_value("webhooks_notificationendpoint", "url", endpoint.pk),
    }

    for value, ciphertext in stored.items():
        assert value not in ciphertext
        assert ciphertext.startswith("gAAAAA"), "a Fernet token"
    loaded = Project.objects.get(pk=project.pk)
    assert (loaded.webhook_secret, loaded.forge_token) == (WEBHOOK_SECRET, FORGE_TOKEN)
    assert ProjectSecret.objects.get(pk=secret.pk).value == NPM_TOKEN
    assert NotificationEndpoint.objects.get(pk=endpoint.pk).url == SLACK_URL
    assert project_secret_values(project) == [NPM_TOKEN]


@pytest.mark.django_db
def test_the_same_value_encrypts_differently_each_time() -> None:
    first = make_project(webhook_secret=WEBHOOK_SECRET)
    second = make_project(webhook_secret=WEBHOOK_SECRET)

    assert raw_value("pipelines_project", "webhook_secret", first.pk) != raw_value(
        "pipelines_project", "webhook_secret", second.pk
    )


@pytest.mark.django_db
def test_a_rotated_webhook_secret_is_stored_encrypted_too() -> None:
    project = make_project(webhook_secret=WEBHOOK_SECRET)

    rotated = project_secret_rotate(project=project).webhook_secret

    stored = raw_value("pipelines_project", "webhook_secret", project.pk)
    assert rotated not in stored
    assert Project.objects.get(pk=project.pk).webhook_secret == rotated


@pytest.mark.django_db
def test_an_empty_token_stays_empty_and_can_be_asked_for() -> None:
    project = make_project(forge_token="")

    assert raw_value("pipelines_project", "forge_token", project.pk) == ""
    assert list(Project.objects.filter(forge_token="")) == [project]


@pytest.mark.django_db
def test_searching_an_encrypted_column_for_a_value_is_refused_rather_than_finding_nothing() -> None:
    make_project(webhook_secret=WEBHOOK_SECRET)

    with pytest.raises(FieldError, match=r"Project\.webhook_secret is encrypted"):
        list(Project.objects.filter(webhook_secret=WEBHOOK_SECRET))
    with pytest.raises(FieldError, match=r"ProjectSecret\.value is encrypted and cannot"):
        list(ProjectSecret.objects.filter(value__startswith="npm_"))


@pytest.mark.django_db
def test_without_configured_keys_the_key_is_derived_from_the_secret_key() -> None:
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[]):
        project = make_project(webhook_secret=WEBHOOK_SECRET)

    stored = raw_value("pipelines_project", "webhook_secret", project.pk)
    derived = Fernet(derived_key(settings.SECRET_KEY).encode())
    assert derived.decrypt(stored.encode()).decode() == WEBHOOK_SECRET


@pytest.mark.django_db
def test_values_encrypted_under_an_old_key_still_read_after_a_new_key_is_put_first() -> None:
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        old = make_project(webhook_secret=WEBHOOK_SECRET)
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        new = make_project(webhook_secret="another-secret-0123456789")

        assert Project.objects.get(pk=old.pk).webhook_secret == WEBHOOK_SECRET
        assert Project.objects.get(pk=new.pk).webhook_secret == "another-secret-0123456789"
    # The first key is the one that encrypts.
    stored = raw_value("pipelines_project", "webhook_secret", new.pk)
    assert Fernet(NEW_KEY.encode()).decrypt(stored.encode()) == b"another-secret-0123456789"


@pytest.mark.django_db
def test_reencryptsecrets_moves_every_secret_to_the_new_key_so_the_old_one_can_go() -> None:
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        project, secret, endpoint = project_with_every_secret()
    out = StringIO()

    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        call_command("reencryptsecrets", stdout=out)

    assert "pipelines_project.webhook_secret: 1 re-encrypted" in out.getvalue()
    assert "webhooks_notificationendpoint.url: 1 re-encrypted" in out.getvalue()
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[NEW_KEY]):
        loaded = Project.objects.get(pk=project.pk)
        assert (loaded.webhook_secret, loaded.forge_token) == (WEBHOOK_SECRET, FORGE_TOKEN)
        assert ProjectSecret.objects.get(pk=secret.pk).value == NPM_TOKEN
        assert NotificationEndpoint.objects.get(pk=endpoint.pk).url == SLACK_URL


@pytest.mark.django_db
def test_a_value_no_configured_key_opens_is_a_clear_error_naming_the_setting() -> None:
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        project = make_project(webhook_secret=WEBHOOK_SECRET)

    with (
        override_settings(DOCKYARD_ENCRYPTION_KEYS=[NEW_KEY]),
        pytest.raises(EncryptionKeyError) as refusal,
    ):
        Project.objects.get(pk=project.pk)

    message = str(refusal.value)
    assert message.startswith("Project.webhook_secret cannot be decrypted with any of the 1 key(s)")
    assert "put that key back in DOCKYARD_ENCRYPTION_KEYS" in message
    assert isinstance(refusal.value, ImproperlyConfigured)


@pytest.mark.django_db
def test_reencryptsecrets_with_a_missing_key_changes_nothing_and_says_why() -> None:
    with override_settings(DOCKYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        project = make_project(webhook_secret=WEBHOOK_SECRET)
    before = raw_value("pipelines_project", "webhook_secret", project.pk)

    with (
        override_settings(DOCKYARD_ENCRYPTION_KEYS=[NEW_KEY]),
        pytest.raises(CommandError, match="DOCKYARD_ENCRYPTION_KEYS"),
    ):
        call_command("reencryptsecrets", stdout=StringIO())

    assert raw_value("pipelines_project", "webhook_secret", project.pk) == before


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_plaintext_rows_and_its_reverse_restores_them() -> None:
    before = [("pipelines", "0004_heartbeats"), ("webhooks", "0003_notificationendpoint")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    project = old_apps.get_model("pipelines", "Project").objects.create(
        slug="legacy",
        repository_url="https://github.com/acme/legacy.git",
        repository_key="github.com/acme/legacy",
        webhook_secret=WEBHOOK_SECRET,
        forge_token=FORGE_TOKEN,
    )
    secret = old_apps.get_model("pipelines", "ProjectSecret").objects.create(
        project_id=project.pk, name="NPM_TOKEN", value=NPM_TOKEN
    )
    endpoint = old_apps.get_model("webhooks", "NotificationEndpoint").objects.create(
        project_id=project.pk, url=SLACK_URL
    )
    assert raw_value("pipelines_project", "webhook_secret", project.pk) == WEBHOOK_SECRET

    try:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        assert WEBHOOK_SECRET not in raw_value("pipelines_project", "webhook_secret", project.pk)
        assert NPM_TOKEN not in raw_value("pipelines_projectsecret", "value", secret.pk)
        assert SLACK_URL not in raw_value("webhooks_notificationendpoint", "url", endpoint.pk)
        loaded = Project.objects.get(pk=project.pk)
        assert (loaded.webhook_secret, loaded.forge_token) == (WEBHOOK_SECRET, FORGE_TOKEN)
        assert NotificationEndpoint.objects.get(pk=endpoint.pk).url == SLACK_URL

        MigrationExecutor(connection).migrate(before)
        assert raw_value("pipelines_project", "webhook_secret", project.pk) == WEBHOOK_SECRET
        assert raw_value("pipelines_projectsecret", "value", secret.pk) == NPM_TOKEN
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_encryption_keys_are_read_from_commas_spaces_or_lines() -> None:
    keys = env_fernet_keys("KEYS", environ={"KEYS": f" {NEW_KEY},\n{OLD_KEY} "})

    assert keys == [NEW_KEY, OLD_KEY]
    assert env_fernet_keys("KEYS", environ={}) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"{NEW_KEY},not-a-key", "KEYS: key 2 of 2 is not a Fernet key"),
        (f"{NEW_KEY} {NEW_KEY}", "KEYS lists the same key twice"),
    ],
)
def test_a_bad_encryption_key_is_refused_by_position_without_showing_it(
    value: str, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as refusal:
        env_fernet_keys("KEYS", environ={"KEYS": value})

    assert str(refusal.value).startswith(message)
    assert "not-a-key" not in str(refusal.value) and NEW_KEY not in str(refusal.value)


def test_a_keys_file_holds_one_key_a_line(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(f"{NEW_KEY}\n{OLD_KEY}\n")

    assert env_fernet_keys("KEYS", environ={"KEYS_FILE": str(tmp_path / "keys")}) == [
        NEW_KEY,
        OLD_KEY,
    ]
