"""Every real delivery in tests/fixtures/webhooks, sent byte for byte with its real headers."""

import json
import uuid
from dataclasses import dataclass

import pytest
from django.test import Client

from pipelines.models import PipelineRun, RunKind
from tests.factories import fixture_bytes, github_headers, make_project
from webhooks.github import github_repository_urls
from webhooks.gitlab import gitlab_repository_urls
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

SECRET = "It's a Secret to Everybody"


@dataclass(frozen=True)
class Expected:
    status: int
    message: str
    ref: str = ""
    sha: str = ""
    kind: str = ""


def run(ref: str, sha: str, kind: str = RunKind.BRANCH) -> Expected:
    return Expected(202, f"run #1 queued for {sha[:12]}", ref, sha, kind)


def ignored(reason: str) -> Expected:
    return Expected(202, f"ignored: {reason}")


CREATE = (
    "GitHub event 'create' does not start runs: it names a new branch or tag but no commit; "
    "Dockyard builds it from the push event GitHub sends alongside"
)
DELETE = (
    "GitHub event 'delete' does not start runs: it names a deleted branch or tag but no commit; "
    "Dockyard records the deletion from the push event GitHub sends alongside"
)

GITHUB = {
    "github-push.json": (
        "push",
        run("refs/heads/master", "fd489864e7642b48eaad6e3f155c10e46810ec72"),
    ),
    "github-push-new-branch.json": (
        "push",
        run("refs/heads/master", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    ),
    "github-push-tag.json": (
        "push",
        run("refs/tags/v0.0.1", "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd", RunKind.TAG),
    ),
    "github-push-tag-2025.json": (
        "push",
        run("refs/tags/the-tag-v1", "67012991d6c69b1c58378346fca366b864d8d1a1", RunKind.TAG),
    ),
    "github-push-tag-delete.json": ("push", ignored("tag 'simple-tag' was deleted")),
    "github-push-branch-delete.json": ("push", ignored("branch 'feature-branch' was deleted")),
    "github-ping.json": ("ping", Expected(200, "pong")),
    "github-create-tag.json": ("create", ignored(CREATE)),
    "github-create-branch.json": ("create", ignored(CREATE)),
    "github-delete.json": ("delete", ignored(DELETE)),
    "github-delete-branch.json": ("delete", ignored(DELETE)),
    "github-pull_request-opened.json": (
        "pull_request",
        run("refs/pull/2/head", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", RunKind.PULL_REQUEST),
    ),
    "github-pull_request-synchronize.json": (
        "pull_request",
        run("refs/pull/2/head", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", RunKind.PULL_REQUEST),
    ),
    "github-release-published.json": (
        "release",
        ignored(
            "GitHub event 'release' does not start runs: a release names a tag, and Dockyard "
            "builds tags from their push event"
        ),
    ),
}
GITLAB = {
    "gitlab-push.json": (
        "Push Hook",
        run("refs/heads/master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
    ),
    "gitlab-tag_push.json": (
        "Tag Push Hook",
        run("refs/tags/v1.0.0", "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", RunKind.TAG),
    ),
    # An annotated tag: `after` is the tag object; the commit to build is checkout_sha.
    "gitlab-tag_push-annotated.json": (
        "Tag Push Hook",
        run("refs/tags/v22", "16862e368d8ab812e48833b741dad720d6e2cb7f", RunKind.TAG),
    ),
    "gitlab-tag_push-delete.json": ("Tag Push Hook", ignored("tag 'v1.0.0' was deleted")),
    "gitlab-push-branch-delete.json": ("Push Hook", ignored("branch 'feature' was deleted")),
    "gitlab-merge_request.json": (
        "Merge Request Hook",
        run(
            "refs/merge-requests/1/head",
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            RunKind.PULL_REQUEST,
        ),
    ),
    "gitlab-merge_request-opened-gitlabcom.json": (
        "Merge Request Hook",
        run(
            "refs/merge-requests/3/head",
            "2f7670508b771e7e77839402be8b34b13787aba8",
            RunKind.PULL_REQUEST,
        ),
    ),
}


def test_every_fixture_file_has_an_expected_outcome() -> None:
    from tests.factories import FIXTURES

    names = {path.name for path in FIXTURES.glob("*.json")}
    assert names == set(GITHUB) | set(GITLAB)


def check(expected: Expected, response: object, project: object) -> None:
    assert (response.status_code, response.json()["message"]) == (
        expected.status,
        expected.message,
    )
    delivery = Delivery.objects.get()
    assert (delivery.status_code, delivery.outcome) == (expected.status, expected.message)
    if expected.sha:
        queued = PipelineRun.objects.get(project=project)
        assert (queued.ref, queued.commit_sha, queued.kind) == (
            expected.ref,
            expected.sha,
            expected.kind,
        )
        assert delivery.run == queued
    else:
        assert not PipelineRun.objects.exists()


@pytest.mark.parametrize("name", sorted(GITHUB))
def test_a_github_delivery_has_its_outcome(client: Client, name: str) -> None:
    event, expected = GITHUB[name]
    body = fixture_bytes(name)
    url = github_repository_urls(json.loads(body))[0]
    project = make_project(repository_url=url, webhook_secret=SECRET)
    response = client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret=SECRET, body=body, event=event),
    )
    check(expected, response, project)


@pytest.mark.parametrize("name", sorted(GITLAB))
def test_a_gitlab_delivery_has_its_outcome(client: Client, name: str) -> None:
    event, expected = GITLAB[name]
    body = fixture_bytes(name)
    url = gitlab_repository_urls(json.loads(body))[0]
    project = make_project(repository_url=url, webhook_secret=SECRET, forge="gitlab")
    response = client.post(
        "/webhooks/gitlab/",
        data=body,
        content_type="application/json",
        headers={
            "X-Gitlab-Event": event,
            "X-Gitlab-Token": SECRET,
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Instance": "https://gitlab.com",
            "User-Agent": "GitLab/17.6.0",
        },
    )
    check(expected, response, project)


def test_a_pull_request_run_publishes_nothing_and_says_so(client: Client) -> None:
    body = fixture_bytes("github-pull_request-opened.json")
    project = make_project(
        repository_url="https://github.com/Codertocat/Hello-World.git", webhook_secret=SECRET
    )
    client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers=github_headers(secret=SECRET, body=body, event="pull_request"),
    )
    queued = PipelineRun.objects.get(project=project)
    assert (queued.pull_request, queued.target_branch, queued.deployable) == (2, "master", False)
    publish = queued.stages.get(name="publish")
    assert publish.status == "skipped"
    assert publish.events.get().reason == "pull request runs publish nothing"
