"""Each real GitLab delivery means what SOURCES.txt says it means."""

import json
from typing import Any

import pytest

from tests.factories import FIXTURES, fixture_bytes
from webhooks.events import Deletion, ForgeEvent, Ignored, PayloadError, PullRequest, Push
from webhooks.gitlab import gitlab_clone_url, gitlab_event, gitlab_repository_urls

# Every GitLab fixture: the X-Gitlab-Event it is sent with, and exactly what it means.
EXPECTED: dict[str, tuple[str, ForgeEvent]] = {
    "gitlab-push.json": (
        "Push Hook",
        Push(
            ref="refs/heads/master",
            commit_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            commit_message="fixed readme",
            commit_author="GitLab dev user <gitlabdev@dv6700.(none)>",
            kind="branch",
            name="master",
            clone_url="http://example.com/mike/diaspora.git",
            created=False,
        ),
    ),
    "gitlab-tag_push.json": (
        "Tag Push Hook",
        Push(
            ref="refs/tags/v1.0.0",
            commit_sha="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
            # A lightweight tag on an existing commit lists no commits, so no message.
            commit_message="",
            kind="tag",
            name="v1.0.0",
            clone_url="http://example.com/jsmith/example.git",
            created=True,
        ),
    ),
    "gitlab-tag_push-annotated.json": (
        "Tag Push Hook",
        Push(
            ref="refs/tags/v22",
            # checkout_sha, the commit; `after` (fabed3d9...) is the annotated tag object.
            commit_sha="16862e368d8ab812e48833b741dad720d6e2cb7f",
            # The commit's message, not the tag's ("hi").
            commit_message="Update main.go",
            commit_author="the test <test@test.test>",
            kind="tag",
            name="v22",
            clone_url="http://10.40.8.5:3200/test/woodpecker.git",
            created=True,
        ),
    ),
    "gitlab-tag_push-delete.json": ("Tag Push Hook", Deletion(kind="tag", name="v1.0.0")),
    "gitlab-push-branch-delete.json": ("Push Hook", Deletion(kind="branch", name="feature")),
    "gitlab-merge_request.json": (
        "Merge Request Hook",
        PullRequest(
            number=1,
            action="opened",
            head_ref="ms-viewport",
            head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            base_ref="master",
            # The source project's, not the top-level project (gitlabhq/gitlab-test).
            clone_url="http://example.com/awesome_space/awesome_project.git",
            title="MS-Viewport",
        ),
    ),
    "gitlab-merge_request-opened-gitlabcom.json": (
        "Merge Request Hook",
        PullRequest(
            number=3,
            action="opened",
            head_ref="real6543-main-patch-42541",
            head_sha="2f7670508b771e7e77839402be8b34b13787aba8",
            base_ref="main",
            clone_url="https://gitlab.com/demoaccount2-commits-group/test_ci_tmp.git",
            title="Edit README.md for more text to read",
        ),
    ),
}


def payload_of(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes(name))
    return payload


def test_every_gitlab_fixture_has_an_expected_event() -> None:
    assert set(EXPECTED) == {path.name for path in FIXTURES.glob("gitlab-*.json")}


@pytest.mark.parametrize(("fixture", "header", "expected"), [(f, *e) for f, e in EXPECTED.items()])
def test_each_gitlab_fixture_means_exactly_its_expected_event(
    fixture: str, header: str, expected: ForgeEvent
) -> None:
    assert gitlab_event(header, payload_of(fixture)) == expected


@pytest.mark.parametrize(("fixture", "header", "expected"), [(f, *e) for f, e in EXPECTED.items()])
def test_a_system_hook_means_what_the_same_project_hook_means(
    fixture: str, header: str, expected: ForgeEvent
) -> None:
    assert gitlab_event("System Hook", payload_of(fixture)) == expected


def test_an_annotated_tag_builds_checkout_sha_not_after() -> None:
    payload = payload_of("gitlab-tag_push-annotated.json")
    event = gitlab_event("Tag Push Hook", payload)
    assert isinstance(event, Push)
    assert payload["after"] == "fabed3d94cd03e6c2b7958afa9569c18a24d301f"
    assert event.commit_sha == payload["checkout_sha"] != payload["after"]


def test_a_deleted_branch_describes_itself_for_the_delivery_outcome() -> None:
    event = gitlab_event("Push Hook", payload_of("gitlab-push-branch-delete.json"))
    assert isinstance(event, Deletion)
    assert event.describe() == "branch 'feature' was deleted"


def test_a_tag_without_a_checkout_sha_that_was_not_deleted_is_ignored() -> None:
    payload = payload_of("gitlab-tag_push.json")
    payload["checkout_sha"] = None
    assert gitlab_event("Tag Push Hook", payload) == Ignored(
        "GitLab sent no checkout_sha for tag 'v1.0.0': "
        "it no longer points at a commit, so there is nothing to build"
    )


def test_a_push_to_a_ref_that_is_neither_branch_nor_tag_is_ignored() -> None:
    payload = payload_of("gitlab-push.json")
    payload["ref"] = "refs/merge-requests/1/head"
    assert gitlab_event("Push Hook", payload) == Ignored(
        "pushes to 'refs/merge-requests/1/head' are neither branches nor tags"
    )


def test_a_push_from_an_old_gitlab_with_commits_as_an_empty_string_has_no_message() -> None:
    payload = payload_of("gitlab-push.json")
    payload["commits"] = ""
    event = gitlab_event("Push Hook", payload)
    assert isinstance(event, Push)
    assert (event.commit_sha, event.commit_message) == (
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "",
    )


def update_with(oldrev: str | None) -> dict[str, Any]:
    payload = payload_of("gitlab-merge_request-opened-gitlabcom.json")
    payload["object_attributes"]["action"] = "update"
    if oldrev is not None:
        payload["object_attributes"]["oldrev"] = oldrev
    return payload


def test_an_update_with_new_commits_builds_the_new_head() -> None:
    event = gitlab_event("Merge Request Hook", update_with("1" * 40))
    assert event == PullRequest(
        number=3,
        action="synchronize",
        head_ref="real6543-main-patch-42541",
        head_sha="2f7670508b771e7e77839402be8b34b13787aba8",
        base_ref="main",
        clone_url="https://gitlab.com/demoaccount2-commits-group/test_ci_tmp.git",
        title="Edit README.md for more text to read",
    )


def test_an_update_without_oldrev_is_an_edit_and_is_ignored() -> None:
    assert gitlab_event("Merge Request Hook", update_with(None)) == Ignored(
        "GitLab merge request !3 was updated without new commits (no 'oldrev'): "
        "GitLab sends update for title, description, label and reviewer edits too"
    )


def test_a_reopened_merge_request_builds_its_head() -> None:
    payload = payload_of("gitlab-merge_request.json")
    payload["object_attributes"]["action"] = "reopen"
    event = gitlab_event("Merge Request Hook", payload)
    assert isinstance(event, PullRequest)
    assert (event.action, event.head_sha) == (
        "reopened",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    )


@pytest.mark.parametrize(
    "action", ["close", "merge", "approved", "unapproved", "approval", "unapproval"]
)
def test_a_merge_request_action_that_brings_no_new_code_is_ignored_naming_it(action: str) -> None:
    payload = payload_of("gitlab-merge_request.json")
    payload["object_attributes"]["action"] = action
    assert gitlab_event("Merge Request Hook", payload) == Ignored(
        f"GitLab merge request action {action!r} does not start runs: "
        "only open, reopen and update with new commits bring code to test"
    )


@pytest.mark.parametrize("header", ["Issue Hook", "Note Hook", "Pipeline Hook", "Release Hook"])
def test_other_events_are_ignored_naming_them(header: str) -> None:
    assert gitlab_event(header, payload_of("gitlab-push.json")) == Ignored(
        f"GitLab event {header!r} does not start runs: "
        "Dockyard acts on Push Hook, Tag Push Hook and Merge Request Hook"
    )


def test_a_system_hook_for_another_event_is_ignored_naming_it() -> None:
    payload = {"event_name": "repository_update", "changes": []}
    assert gitlab_event("System Hook", payload) == Ignored(
        "GitLab system hook event 'repository_update' does not start runs"
    )


def test_the_repository_urls_are_the_clone_urls_without_repeats() -> None:
    payload = payload_of("gitlab-push.json")
    assert gitlab_repository_urls(payload) == (
        "http://example.com/mike/diaspora.git",
        "git@example.com:mike/diaspora.git",
    )


def test_the_ssh_form_of_repository_url_in_a_tag_push_is_never_used() -> None:
    payload = payload_of("gitlab-tag_push.json")
    urls = gitlab_repository_urls(payload)
    assert payload["repository"]["url"] == "ssh://git@example.com/jsmith/example.git"
    assert payload["repository"]["url"] not in urls
    assert urls == ("http://example.com/jsmith/example.git", "git@example.com:jsmith/example.git")


def test_a_merge_request_names_the_target_project_and_clones_the_source() -> None:
    payload = payload_of("gitlab-merge_request.json")
    assert gitlab_repository_urls(payload) == (
        "http://example.com/gitlabhq/gitlab-test.git",
        "git@example.com:gitlabhq/gitlab-test.git",
    )
    assert gitlab_clone_url(payload) == "http://example.com/gitlabhq/gitlab-test.git"


def test_the_deprecated_url_names_are_used_when_the_current_ones_are_missing() -> None:
    payload = {
        "project": {
            "url": "git@old.example.com:team/app.git",
            "ssh_url": "git@old.example.com:team/app.git",
            "http_url": "http://old.example.com/team/app.git",
        },
        "repository": {"url": "ssh://git@old.example.com/team/app.git"},
    }
    assert gitlab_repository_urls(payload) == (
        "http://old.example.com/team/app.git",
        "git@old.example.com:team/app.git",
    )
    assert gitlab_clone_url(payload) == "http://old.example.com/team/app.git"


def test_the_https_url_is_cloned_before_the_ssh_one() -> None:
    payload = {
        "project": {"git_ssh_url": "git@example.com:team/app.git"},
        "repository": {"git_http_url": "https://example.com/team/app.git"},
    }
    assert gitlab_clone_url(payload) == "https://example.com/team/app.git"


def test_a_payload_without_a_project_names_no_url() -> None:
    assert (gitlab_repository_urls({}), gitlab_clone_url({})) == ((), "")


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """`payload` with the field at the dotted `path` removed."""
    *parents, last = path.split(".")
    parent = payload
    for key in parents:
        parent = parent[key]
    del parent[last]
    return payload


@pytest.mark.parametrize("field", ["ref", "after"])
def test_a_push_without_a_required_field_is_a_payload_error_naming_it(field: str) -> None:
    payload = without(payload_of("gitlab-push.json"), field)
    with pytest.raises(PayloadError) as raised:
        gitlab_event("Push Hook", payload)
    assert str(raised.value) == f"push payload has no {field!r}"


@pytest.mark.parametrize(
    "sha", ["da1560886d4f", "DA1560886D4F094C3E6C9EF40349F7D38B5D27D7", "--upload-pack=x", 42]
)
def test_a_push_whose_checkout_sha_is_not_a_commit_id_is_a_payload_error(sha: object) -> None:
    payload = payload_of("gitlab-push.json")
    payload["checkout_sha"] = sha
    with pytest.raises(PayloadError) as raised:
        gitlab_event("Push Hook", payload)
    assert str(raised.value) == f"checkout_sha {sha!r} is not a commit id"


@pytest.mark.parametrize(
    "path",
    [
        "object_attributes.action",
        "object_attributes.iid",
        "object_attributes.source_branch",
        "object_attributes.target_branch",
        "object_attributes.last_commit.id",
        "object_attributes.source.git_http_url",
    ],
)
def test_a_merge_request_without_a_required_field_is_a_payload_error_naming_it(
    path: str,
) -> None:
    payload = without(payload_of("gitlab-merge_request.json"), path)
    with pytest.raises(PayloadError) as raised:
        gitlab_event("Merge Request Hook", payload)
    assert str(raised.value) == f"merge request payload has no {path!r}"


def test_a_merge_request_whose_last_commit_is_garbled_is_a_payload_error_naming_it() -> None:
    payload = payload_of("gitlab-merge_request.json")
    payload["object_attributes"]["last_commit"]["id"] = "main"
    with pytest.raises(PayloadError) as raised:
        gitlab_event("Merge Request Hook", payload)
    assert str(raised.value) == "object_attributes.last_commit.id 'main' is not a commit id"
