"""Each real GitHub delivery means what SOURCES.txt says it means."""

import json

import pytest

from tests.factories import fixture_bytes
from webhooks.events import Ignored, PayloadError, Ping, Push
from webhooks.github import github_event, github_repository_urls


def event_of(name: str, event: str) -> object:
    return github_event(event, json.loads(fixture_bytes(name)))


@pytest.mark.parametrize(
    ("fixture", "ref", "sha"),
    [
        ("github-push.json", "refs/heads/master", "fd489864e7642b48eaad6e3f155c10e46810ec72"),
        (
            "github-push-new-branch.json",
            "refs/heads/master",
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        ),
        ("github-push-tag.json", "refs/tags/v0.0.1", "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"),
        (
            "github-push-tag-2025.json",
            "refs/tags/the-tag-v1",
            "67012991d6c69b1c58378346fca366b864d8d1a1",
        ),
    ],
)
def test_a_push_that_points_at_a_commit_builds_that_commit(
    fixture: str, ref: str, sha: str
) -> None:
    event = event_of(fixture, "push")
    assert isinstance(event, Push)
    assert (event.ref, event.commit_sha) == (ref, sha)


def test_a_push_keeps_the_head_commit_message() -> None:
    event = event_of("github-push.json", "push")
    assert isinstance(event, Push)
    assert (
        event.commit_message
        == json.loads(fixture_bytes("github-push.json"))["head_commit"]["message"]
    )


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("github-push-branch-delete.json", "branch 'feature-branch' was deleted"),
        ("github-push-tag-delete.json", "tag 'simple-tag' was deleted"),
    ],
)
def test_a_push_that_deletes_a_ref_builds_nothing(fixture: str, reason: str) -> None:
    assert event_of(fixture, "push") == Ignored(reason)


def test_a_ping_is_a_ping() -> None:
    assert event_of("github-ping.json", "ping") == Ping()


@pytest.mark.parametrize(
    ("fixture", "event"),
    [
        ("github-create-tag.json", "create"),
        ("github-create-branch.json", "create"),
        ("github-delete.json", "delete"),
        ("github-delete-branch.json", "delete"),
        ("github-release-published.json", "release"),
    ],
)
def test_other_events_are_ignored_with_their_name(fixture: str, event: str) -> None:
    assert event_of(fixture, event) == Ignored(f"GitHub event {event!r} does not start runs")


def test_the_clone_url_names_the_repository_never_the_api_url() -> None:
    payload = json.loads(fixture_bytes("github-push-tag-2025.json"))
    urls = github_repository_urls(payload)
    assert urls[0] == "https://github.com/6543/test_ci_tmp.git"
    assert payload["repository"]["url"] not in urls


def test_a_push_without_after_is_a_payload_error_naming_the_field() -> None:
    payload = json.loads(fixture_bytes("github-push.json"))
    del payload["after"]
    with pytest.raises(PayloadError, match="'after'"):
        github_event("push", payload)


def test_a_push_whose_commit_id_is_not_hexadecimal_is_a_payload_error() -> None:
    payload = json.loads(fixture_bytes("github-push.json"))
    payload["head_commit"]["id"] = "--upload-pack=touch /tmp/pwned"
    with pytest.raises(PayloadError, match="not a commit id"):
        github_event("push", payload)
