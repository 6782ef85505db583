from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from projects.models import Project

pytestmark = pytest.mark.django_db


def test_it_registers_the_project_and_prints_its_webhook_url_and_secret() -> None:
    out = StringIO()
    call_command(
        "addproject",
        "web",
        "--repo",
        "https://github.com/acme/web.git",
        "--test-command",
        "python3 -m pytest -q",
        stdout=out,
    )
    project = Project.objects.get(slug="web")
    assert project.test_command == "python3 -m pytest -q"
    assert "webhook URL:    http://127.0.0.1:8000/webhooks/github/" in out.getvalue()
    assert f"webhook secret: {project.webhook_secret}" in out.getvalue()
    assert len(project.webhook_secret) >= 32


def test_it_keeps_a_secret_given_by_the_operator() -> None:
    call_command(
        "addproject",
        "web",
        "--repo",
        "git@github.com:acme/web.git",
        "--secret",
        "s" * 20,
        stdout=StringIO(),
    )
    assert Project.objects.get(slug="web").webhook_secret == "s" * 20


def test_it_refuses_a_bad_repository_with_the_reason() -> None:
    with pytest.raises(CommandError, match="starts with '-'"):
        call_command("addproject", "web", "--repo=--upload-pack=/tmp/x", stdout=StringIO())
    assert not Project.objects.exists()


def test_it_takes_filters_and_forge_settings() -> None:
    out = StringIO()
    call_command(
        "addproject",
        "web",
        "--repo",
        "https://gitlab.example.com/group/sub/web.git",
        "--forge",
        "gitlab",
        "--branches",
        "main release/*",
        "--forge-api-url",
        "https://gitlab.example.com/api/v4",
        "--forge-token",
        "glpat-123",
        stdout=out,
    )
    project = Project.objects.get(slug="web")
    assert (project.branch_filter, project.tag_filter) == ("main release/*", "*")
    assert project.forge_repository == "group/sub/web"
    assert "webhook URL:    http://127.0.0.1:8000/webhooks/gitlab/" in out.getvalue()
    assert "commit status:  to group/sub/web" in out.getvalue()
