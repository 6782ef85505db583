"""Hostile repository URLs are refused when a project is added, and again right before git runs.

A project row may hold a URL the rules refuse today (stored before them, edited in the admin,
or the allowlist was tightened since): its runs fail at checkout with the reason, and nothing
the URL asks for is executed. The checkout stage runs in this process here, so that each test
chooses its settings; the tests use the non-transactional database, so no task reaches a worker.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.test import APIClient

from infrastructure.git_checkout import GitCheckoutError, export_commit, mirror_fetch
from infrastructure.repository_urls import repository_key
from pipelines.models import PipelineRun
from pipelines.services import mirror_dir
from pipelines.states import RunStatus, StageName
from pipelines.tasks import checkout
from projects.models import Project
from projects.services import ProjectError, project_create
from tests.factories import (
    GitRepo,
    escaping_link,
    github_headers,
    github_push_body,
    make_project,
    unique_slug,
)

pytestmark = pytest.mark.django_db

SECRET = "hostile-repositories-secret"
SHA = "a" * 40
ALLOWLIST = ["github.com", "*.gitlab.example"]


@dataclass(frozen=True)
class Hostile:
    """A URL, why it is refused, and the settings under which it is."""

    url: str
    reason: str
    settings: dict[str, Any]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that exists only if a command smuggled in a URL ran."""
    return tmp_path / "pwned"


@pytest.fixture
def payload_script(tmp_path: Path, marker: Path) -> Path:
    script = tmp_path / "pwn.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return script


def hostile_urls(script: Path) -> list[Hostile]:
    local_refused = {"DOCKYARD_ALLOW_LOCAL_REPOSITORIES": False}
    return [
        Hostile("file:///etc", "local repositories are refused", local_refused),
        Hostile(str(script.parent), "local repositories are refused", local_refused),
        Hostile(f"ext::{script}", "uses a git remote helper ('::'), refused", {}),
        Hostile(f"--upload-pack={script}", "starts with '-' (it would be read as an option)", {}),
        Hostile(
            "ssh://-oProxyCommand=touch$IFS/tmp/dockyard-pwned/x",
            "has a host or user starting with '-', refused",
            {},
        ),
        Hostile(
            "https://evil.example.com/acme/web.git",
            "repository host 'evil.example.com' is not allowed: "
            "DOCKYARD_ALLOWED_REPOSITORY_HOSTS is 'github.com *.gitlab.example'",
            {"DOCKYARD_ALLOWED_REPOSITORY_HOSTS": ALLOWLIST},
        ),
        Hostile(
            "git@evil.example.com:acme/web.git",
            "repository host 'evil.example.com' is not allowed",
            {"DOCKYARD_ALLOWED_REPOSITORY_HOSTS": ALLOWLIST},
        ),
        Hostile(
            "https://github.com/acme/web.git\n--upload-pack=x",
            "contains spaces or control characters",
            {},
        ),
    ]


HOSTILE_IDS = [
    "file-url",
    "local-path",
    "ext-helper",
    "upload-pack-option",
    "ssh-option-host",
    "host-outside-allowlist",
    "scp-host-outside-allowlist",
    "newline",
]


@pytest.mark.parametrize("index", range(len(HOSTILE_IDS)), ids=HOSTILE_IDS)
def test_a_hostile_url_is_refused_when_the_project_is_added(
    index: int, payload_script: Path, marker: Path
) -> None:
    hostile = hostile_urls(payload_script)[index]

    with override_settings(**hostile.settings), pytest.raises(ProjectError) as refusal:
        project_create(slug=unique_slug(), repository_url=hostile.url, webhook_secret=SECRET)

    assert str(refusal.value).startswith("repository: ")
    assert hostile.reason in str(refusal.value)
    assert not Project.objects.exists()
    assert not marker.exists()


def test_the_api_answers_a_host_outside_the_allowlist_with_the_setting_to_change() -> None:
    api = APIClient()
    api.force_authenticate(User.objects.create_user("ops", is_staff=True))

    with override_settings(DOCKYARD_ALLOWED_REPOSITORY_HOSTS=ALLOWLIST):
        response = api.post(
            "/api/v1/projects/",
            {"slug": "web", "repository_url": "https://evil.example.com/acme/web.git"},
            format="json",
        )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "repository: repository host 'evil.example.com' is not allowed: "
        "DOCKYARD_ALLOWED_REPOSITORY_HOSTS is 'github.com *.gitlab.example'",
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/web.git",
        "git@github.com:acme/web.git",
        "https://code.gitlab.example/group/web.git",
        "ssh://git@GitHub.com/acme/web.git",
    ],
)
def test_hosts_that_match_the_allowlist_are_accepted(url: str) -> None:
    with override_settings(DOCKYARD_ALLOWED_REPOSITORY_HOSTS=ALLOWLIST):
        project = make_project(repository_url=url)

    assert project.repository_url == url


@pytest.mark.parametrize("index", range(len(HOSTILE_IDS)), ids=HOSTILE_IDS)
def test_a_webhook_run_of_a_stored_hostile_url_fails_at_checkout_and_runs_nothing(
    index: int, payload_script: Path, marker: Path
) -> None:
    hostile = hostile_urls(payload_script)[index]
    # As if stored before today's rules: straight into the table, past project_create.
    project = Project.objects.create(
        slug=unique_slug(),
        repository_url=hostile.url,
        repository_key=repository_key(hostile.url),
        webhook_secret=SECRET,
    )
    body = github_push_body(clone_url=hostile.url, sha=SHA)

    with override_settings(**hostile.settings):
        response = Client().post(
            "/webhooks/github/",
            data=body,
            content_type="application/json",
            headers=github_headers(secret=SECRET, body=body),
        )
        assert response.status_code == 202, response.content
        run = PipelineRun.objects.get(project=project)
        checkout.apply(args=[run.pk])

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == StageName.CHECKOUT
    assert run.failure_reason.startswith("refusing to fetch: ")
    assert hostile.reason in run.failure_reason
    assert not marker.exists()
    assert not mirror_dir(project).exists()


def test_a_payload_naming_a_hostile_clone_url_finds_no_project_and_starts_nothing(
    payload_script: Path, marker: Path
) -> None:
    make_project(repository_url="https://github.com/acme/web.git", webhook_secret=SECRET)
    body = github_push_body(clone_url=f"--upload-pack={payload_script}", sha=SHA)

    response = Client().post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret=SECRET, body=body),
    )

    assert response.status_code == 404
    assert not PipelineRun.objects.exists()
    assert not marker.exists()


def test_git_may_not_use_the_file_transport_when_local_repositories_are_refused(
    tmp_path: Path,
) -> None:
    # Git's own configuration can rewrite an allowed URL (url.<base>.insteadOf, here in the
    # mirror's config, as an operator's ~/.gitconfig could): GIT_ALLOW_PROTOCOL still holds.
    origin = GitRepo(tmp_path / "origin")
    origin.write("a.txt", "one\n")
    first = origin.commit("one")
    mirror = tmp_path / "mirror.git"
    allowed_url = "https://github.com/acme/web.git"
    mirror_fetch(url=str(origin.path), mirror_dir=mirror, commit_sha=first)
    subprocess.run(
        ["git", "config", f"url.{origin.path}.insteadOf", allowed_url], cwd=mirror, check=True
    )
    origin.write("a.txt", "two\n")
    second = origin.commit("two")

    with (
        override_settings(DOCKYARD_ALLOW_LOCAL_REPOSITORIES=False),
        pytest.raises(GitCheckoutError, match="transport 'file' not allowed"),
    ):
        mirror_fetch(url=allowed_url, mirror_dir=mirror, commit_sha=second)


def test_credentials_in_a_url_stay_out_of_the_checkout_log_and_errors(tmp_path: Path) -> None:
    url = "https://x-access-token:ghs_TOPSECRET@evil.example.com/acme/web.git"

    with (
        override_settings(DOCKYARD_ALLOWED_REPOSITORY_HOSTS=ALLOWLIST),
        pytest.raises(ProjectError) as refusal,
    ):
        project_create(slug=unique_slug(), repository_url=url + "\n", webhook_secret=SECRET)

    assert "ghs_TOPSECRET" not in str(refusal.value)
    assert "https://***@evil.example.com/acme/web.git" in str(refusal.value)


@pytest.mark.parametrize(
    ("make_links", "why"),
    [
        (
            lambda path: (path / "shadow").symlink_to("/etc/shadow"),
            "'shadow' is a link to an absolute path",
        ),
        (lambda path: (path / "root").symlink_to("/"), "'root' is a link to an absolute path"),
        (
            lambda path: (path / "up").symlink_to("../../../../../../../../etc"),
            "'up' would link to",
        ),
    ],
    ids=["file-link-to-shadow", "folder-link-to-root", "relative-link-out"],
)
def test_a_commit_with_a_link_out_of_the_repository_is_refused_at_export(
    tmp_path: Path, make_links: Any, why: str
) -> None:
    origin = GitRepo(tmp_path / "origin")
    origin.write("Dockerfile", "FROM scratch\n")
    make_links(origin.path)
    sha = origin.commit("links out")
    mirror, source = tmp_path / "mirror.git", tmp_path / "src"
    mirror_fetch(url=origin.url, mirror_dir=mirror, commit_sha=sha)

    with pytest.raises(GitCheckoutError) as refusal:
        export_commit(mirror_dir=mirror, commit_sha=sha, destination=source)

    assert str(refusal.value).startswith(f"commit {sha} has a path Dockyard refuses: ")
    assert why in str(refusal.value)
    assert not source.exists()


def test_a_chain_of_links_that_leads_out_only_once_complete_is_refused_at_export(
    tmp_path: Path,
) -> None:
    origin = GitRepo(tmp_path / "origin")
    origin.write("Dockerfile", "FROM scratch\nCOPY .dockerignore /leak\n")
    escaping_link(origin, ".dockerignore", "/etc/hostname")
    sha = origin.commit("a chain")
    mirror, source = tmp_path / "mirror.git", tmp_path / "src"
    mirror_fetch(url=origin.url, mirror_dir=mirror, commit_sha=sha)

    with pytest.raises(GitCheckoutError) as refusal:
        export_commit(mirror_dir=mirror, commit_sha=sha, destination=source)

    assert "'.dockerignore' is a link leading out of the repository (to 'l01')" in str(
        refusal.value
    )
    assert not source.exists(), "nothing of a refused tree stays for a build to follow"


def test_links_that_stay_inside_the_repository_are_kept(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin")
    origin.write("docker/base.Dockerfile", "FROM scratch\n")
    (origin.path / "Dockerfile").symlink_to("docker/base.Dockerfile")
    (origin.path / "docker" / "shared").symlink_to("..")
    sha = origin.commit("links inside")
    mirror, source = tmp_path / "mirror.git", tmp_path / "src"
    mirror_fetch(url=origin.url, mirror_dir=mirror, commit_sha=sha)

    export_commit(mirror_dir=mirror, commit_sha=sha, destination=source)

    assert (source / "Dockerfile").read_text() == "FROM scratch\n"
    assert (source / "docker" / "shared").resolve() == source.resolve()
