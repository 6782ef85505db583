"""API tokens are kept as digests: the database holds nothing that would authenticate."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.tokens import api_token_issue, token_digest

pytestmark = pytest.mark.django_db


def stored_keys() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM authtoken_token")
        return [row[0] for row in cursor.fetchall()]


def status_with(token: str) -> int:
    return APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/projects/").status_code


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


def test_an_issued_token_authenticates_and_only_its_digest_is_stored(alice: User) -> None:
    token = api_token_issue(user=alice)

    assert status_with(token) == 200
    assert stored_keys() == [token_digest(token)]
    assert token not in stored_keys()[0]


def test_what_the_database_holds_does_not_authenticate(alice: User) -> None:
    api_token_issue(user=alice)

    assert status_with(stored_keys()[0]) == 401


def test_a_wrong_token_is_refused(alice: User) -> None:
    token = api_token_issue(user=alice)

    assert status_with(token[:-1] + ("A" if token[-1] != "A" else "B")) == 401


def test_issuing_a_new_token_revokes_the_old_one(alice: User) -> None:
    old = api_token_issue(user=alice)

    new = api_token_issue(user=alice)

    assert (status_with(old), status_with(new)) == (401, 200)
    assert stored_keys() == [token_digest(new)]


def test_a_token_of_an_inactive_user_is_refused(alice: User) -> None:
    token = api_token_issue(user=alice)
    alice.is_active = False
    alice.save()

    assert status_with(token) == 401


def test_a_token_stored_in_clear_by_drfs_own_tools_never_authenticates(alice: User) -> None:
    plain = Token.objects.create(user=alice).key

    assert status_with(plain) == 401


def test_createtoken_prints_a_working_token_once(alice: User) -> None:
    out = StringIO()

    call_command("createtoken", "alice", stdout=out)

    token = out.getvalue().strip()
    assert status_with(token) == 200
    assert stored_keys() == [token_digest(token)]


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_existing_tokens_into_digests_that_keep_working() -> None:
    before = [("api", "0001_initial"), ("authtoken", "0004_alter_tokenproxy_options")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    user = old_apps.get_model("auth", "User").objects.create(username="bob")
    plain = "0123456789abcdef0123456789abcdef01234567"
    old_apps.get_model("authtoken", "Token").objects.create(key=plain, user_id=user.pk)

    try:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        assert stored_keys() == [token_digest(plain)]
        assert status_with(plain) == 200
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
