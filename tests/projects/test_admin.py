"""The project admin: secrets are write-only, repository URLs follow the same rules as the API."""

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client, override_settings

from infrastructure.repository_urls import repository_key
from projects.models import Project
from tests.admin_pages import admin_form_data
from tests.factories import make_project

pytestmark = pytest.mark.django_db

SECRET = "It's a Secret to Everybody"
TOKEN = "ghp_forge-token-0123456789"


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root"))
    return client


@pytest.fixture
def project() -> Project:
    return make_project(slug="web", webhook_secret=SECRET, forge_token=TOKEN)


def change_url(project: Project) -> str:
    return f"/admin/projects/project/{project.pk}/change/"


def form_errors(answer: Any, field: str) -> str:
    """The form's error messages for `field`, as plain text."""
    return " ".join(answer.context["adminform"].form.errors.get(field, []))


def posted(client: Client, url: str, **changes: Any) -> Any:
    """The form posted back as a browser would: the secret fields as the page left them."""
    data = admin_form_data(client, url, **changes)
    for name in ("webhook_secret", "forge_token"):
        data[name] = changes.get(name, "")
    return client.post(url, data)


def test_the_change_page_never_carries_the_webhook_secret_or_the_forge_token(
    admin_client: Client, project: Project
) -> None:
    page = admin_client.get(change_url(project)).content.decode()

    assert 'name="webhook_secret"' in page and 'name="forge_token"' in page
    assert SECRET not in page and SECRET.replace("'", "&#x27;") not in page
    assert TOKEN not in page


def test_saving_with_the_secret_fields_left_empty_keeps_both_and_logs_no_change_to_them(
    admin_client: Client, project: Project
) -> None:
    answer = posted(admin_client, change_url(project), default_branch="trunk")

    assert answer.status_code == 302, answer.context["adminform"].form.errors
    project.refresh_from_db()
    assert project.default_branch == "trunk"
    assert project.webhook_secret == SECRET
    assert project.forge_token == TOKEN
    change_message = LogEntry.objects.get(object_id=str(project.pk)).get_change_message()
    assert "Default branch" in change_message and "secret" not in change_message.lower()


def test_a_new_forge_token_replaces_the_old_one_and_clearing_removes_it(
    admin_client: Client, project: Project
) -> None:
    posted(admin_client, change_url(project), forge_token="glpat-new-token")
    project.refresh_from_db()
    assert project.forge_token == "glpat-new-token"

    posted(admin_client, change_url(project), clear_forge_token=True)
    project.refresh_from_db()
    assert project.forge_token == ""
    assert project.webhook_secret == SECRET


def test_a_webhook_secret_shorter_than_16_characters_is_refused(
    admin_client: Client, project: Project
) -> None:
    answer = posted(admin_client, change_url(project), webhook_secret="short")

    assert answer.status_code == 200
    assert "at least 16 characters" in form_errors(answer, "webhook_secret")
    project.refresh_from_db()
    assert project.webhook_secret == SECRET


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("--upload-pack=touch%20/tmp/pwned", "starts with '-'"),
        ("ext::sh%20-c%20touch%20/tmp/pwned", "remote helper"),
        ("file:///etc", "on this machine's disk"),
    ],
)
def test_a_repository_url_the_api_refuses_is_refused_in_the_admin_too(
    url: str, named: str, admin_client: Client, project: Project
) -> None:
    with override_settings(DOCKYARD_ALLOW_LOCAL_REPOSITORIES=False):
        answer = posted(admin_client, change_url(project), repository_url=url)

    assert answer.status_code == 200
    assert named in form_errors(answer, "repository_url")
    project.refresh_from_db()
    assert project.repository_url == "https://github.com/acme/web.git"


def test_a_changed_repository_url_moves_the_key_webhooks_find_the_project_by(
    admin_client: Client, project: Project
) -> None:
    make_project(slug="api")
    taken = posted(admin_client, change_url(project), repository_url="git@github.com:acme/api.git")
    assert "already project 'api'" in form_errors(taken, "repository_url")

    moved = posted(
        admin_client, change_url(project), repository_url="git@github.com:acme/web-app.git"
    )

    assert moved.status_code == 302
    project.refresh_from_db()
    assert project.repository_key == repository_key("https://github.com/acme/web-app")


def test_a_project_added_in_the_admin_without_a_secret_gets_a_random_one(
    admin_client: Client,
) -> None:
    url = "/admin/projects/project/add/"
    data = admin_form_data(
        admin_client,
        url,
        slug="docs",
        repository_url="https://github.com/acme/docs.git",
        default_branch="main",
    )

    answer = admin_client.post(url, data)

    assert answer.status_code == 302, answer.context["adminform"].form.errors
    added = Project.objects.get(slug="docs")
    assert len(added.webhook_secret) == 48
    assert added.forge_token == ""
    assert added.repository_key == repository_key("https://github.com/acme/docs.git")
    # Commit statuses go to the repository the URL names, as for a project the API adds.
    assert added.forge_repository == "acme/docs"


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("slug", "Web", "use lowercase letters"),
        ("test_command", "sh -c 'unbalanced", "test command"),
        ("forge_api_url", "ftp://forge.example.com", "use an http(s) URL"),
        ("test_timeout", "0", "use a number of seconds above 0"),
    ],
)
def test_a_setting_the_api_refuses_is_refused_in_the_admin_too(
    field: str, value: str, named: str, admin_client: Client, project: Project
) -> None:
    answer = posted(admin_client, change_url(project), **{field: value})

    assert answer.status_code == 200
    errors = answer.context["adminform"].form.errors
    assert named in " ".join(message for messages in errors.values() for message in messages)
    project.refresh_from_db()
    assert str(getattr(project, field)) != value


def test_the_project_list_hides_credentials_in_repository_urls(admin_client: Client) -> None:
    make_project(slug="private", repository_url="https://x-token:ghp_s3cr3t@github.com/acme/p.git")

    listing = admin_client.get("/admin/projects/project/").content.decode()

    assert "github.com/acme/p.git" in listing
    assert "ghp_s3cr3t" not in listing
