"""Each real GitHub delivery means what SOURCES.txt says it means."""

import json
from typing import Any

import pytest

from tests.factories import FIXTURES, fixture_bytes
from webhooks.events import Deletion, ForgeEvent, Ignored, PayloadError, Ping, PullRequest, Push
from webhooks.github import github_clone_url, github_event, github_repository_urls

HELLO_WORLD = "https://github.com/Codertocat/Hello-World.git"
DRONE_TEST_GO = "https://github.com/bradrydzewski/drone-test-go.git"

# Every GitHub fixture: the X-GitHub-Event it is sent with, and exactly what it means.
EXPECTED: dict[str, tuple[str, ForgeEvent]] = {
    "github-push.json": (
        "push",
        Push(
            ref="refs/heads/master",
            commit_sha="fd489864e7642b48eaad6e3f155c10e46810ec72",
            commit_message="test a push event",
            commit_author="binkkatal <binkkatal.r@gmail.com>",
            kind="branch",
            name="master",
            clone_url="https://github.com/binkkatal/sample_app.git",
            created=False,
        ),
    ),
    "github-push-new-branch.json": (
        "push",
        Push(
            ref="refs/heads/master",
            commit_sha="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            commit_message="Initial commit",
            commit_author="Codertocat <21031067+Codertocat@users.noreply.github.com>",
            kind="branch",
            name="master",
            clone_url=HELLO_WORLD,
            created=True,
        ),
    ),
    "github-push-tag.json": (
        "push",
        Push(
            ref="refs/tags/v0.0.1",
            commit_sha="d2b75aa7797ec26b088fa2dd527e9d2c052fcedd",
            commit_message="Update .drone.yml",
            commit_author="Brad Rydzewski <brad.rydzewski@gmail.com>",
            kind="tag",
            name="v0.0.1",
            clone_url=DRONE_TEST_GO,
            created=True,
        ),
    ),
    "github-push-tag-2025.json": (
        "push",
        Push(
            ref="refs/tags/the-tag-v1",
            commit_sha="67012991d6c69b1c58378346fca366b864d8d1a1",
            commit_message="Update .woodpecker.yml",
            commit_author="6543 <6543@obermui.de>",
            kind="tag",
            name="the-tag-v1",
            clone_url="https://github.com/6543/test_ci_tmp.git",
            created=True,
        ),
    ),
    "github-push-tag-delete.json": ("push", Deletion(kind="tag", name="simple-tag")),
    "github-push-branch-delete.json": ("push", Deletion(kind="branch", name="feature-branch")),
    "github-ping.json": ("ping", Ping()),
    "github-pull_request-opened.json": (
        "pull_request",
        PullRequest(
            number=2,
            action="opened",
            head_ref="changes",
            head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            base_ref="master",
            clone_url=HELLO_WORLD,
            title="Update the README with new information.",
        ),
    ),
    "github-pull_request-synchronize.json": (
        "pull_request",
        PullRequest(
            number=2,
            action="synchronize",
            head_ref="changes",
            head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            base_ref="master",
            clone_url=HELLO_WORLD,
            title="Update the README with new information.",
        ),
    ),
    "github-create-tag.json": (
        "create",
        Ignored(
            "GitHub event 'create' does not start runs: it names a new branch or tag but no "
            "commit; Dockyard builds it from the push event GitHub sends alongside"
        ),
    ),
    "github-create-branch.json": (
        "create",
        Ignored(
            "GitHub event 'create' does not start runs: it names a new branch or tag but no "
            "commit; Dockyard builds it from the push event GitHub sends alongside"
        ),
    ),
    "github-delete.json": (
        "delete",
        Ignored(
            "GitHub event 'delete' does not start runs: it names a deleted branch or tag but no "
            "commit; Dockyard records the deletion from the push event GitHub sends alongside"
        ),
    ),
    "github-delete-branch.json": (
        "delete",
        Ignored(
            "GitHub event 'delete' does not start runs: it names a deleted branch or tag but no "
            "commit; Dockyard records the deletion from the push event GitHub sends alongside"
        ),
    ),
    "github-release-published.json": (
        "release",
        Ignored(
            "GitHub event 'release' does not start runs: "
            "a release names a tag, and Dockyard builds tags from their push event"
        ),
    ),
}


def payload_of(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(fixture_bytes(name))
    return payload


def test_every_github_fixture_has_an_expected_event() -> None:
    assert set(EXPECTED) == {path.name for path in FIXTURES.glob("github-*.json")}


@pytest.mark.parametrize(("fixture", "event", "expected"), [(f, *e) for f, e in EXPECTED.items()])
def test_each_github_fixture_means_exactly_its_expected_event(
    fixture: str, event: str, expected: ForgeEvent
) -> None:
    assert github_event(event, payload_of(fixture)) == expected


def test_a_deleted_tag_describes_itself_for_the_delivery_outcome() -> None:
    event = github_event("push", payload_of("github-push-tag-delete.json"))
    assert isinstance(event, Deletion)
    assert event.describe() == "tag 'simple-tag' was deleted"


def test_an_annotated_tag_builds_the_head_commit_not_the_tag_object() -> None:
    payload = payload_of("github-push-tag.json")
    tag_object = "1" * 40
    payload["after"] = tag_object
    event = github_event("push", payload)
    assert isinstance(event, Push)
    assert event.commit_sha == "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"


def test_a_push_without_a_head_commit_builds_after() -> None:
    payload = payload_of("github-push.json")
    payload["head_commit"] = None
    event = github_event("push", payload)
    assert isinstance(event, Push)
    assert (event.commit_sha, event.commit_message) == (
        "fd489864e7642b48eaad6e3f155c10e46810ec72",
        "",
    )


def test_a_push_marked_deleted_is_a_deletion_even_with_a_commit() -> None:
    payload = payload_of("github-push.json")
    payload["deleted"] = True
    assert github_event("push", payload) == Deletion(kind="branch", name="master")


def test_a_push_to_a_ref_that_is_neither_branch_nor_tag_is_ignored() -> None:
    payload = payload_of("github-push.json")
    payload["ref"] = "refs/notes/commits"
    assert github_event("push", payload) == Ignored(
        "pushes to 'refs/notes/commits' are neither branches nor tags"
    )


def test_a_branch_name_keeps_its_slashes() -> None:
    payload = payload_of("github-push.json")
    payload["ref"] = "refs/heads/feature/login"
    event = github_event("push", payload)
    assert isinstance(event, Push)
    assert (event.kind, event.name) == ("branch", "feature/login")


def test_a_push_built_from_its_ref_alone_knows_its_kind_and_name() -> None:
    push = Push(ref="refs/tags/v1.2.0", commit_sha="a" * 40, commit_message="")
    assert (push.kind, push.name, push.clone_url, push.created) == ("tag", "v1.2.0", "", False)


@pytest.mark.parametrize("action", ["closed", "edited", "labeled", "assigned", "ready_for_review"])
def test_a_pull_request_action_that_brings_no_new_code_is_ignored_naming_it(action: str) -> None:
    payload = payload_of("github-pull_request-opened.json")
    payload["action"] = action
    assert github_event("pull_request", payload) == Ignored(
        f"GitHub pull request action {action!r} does not start runs: "
        "only opened, synchronize and reopened bring code to test"
    )


def test_a_reopened_pull_request_builds_its_head() -> None:
    payload = payload_of("github-pull_request-opened.json")
    payload["action"] = "reopened"
    event = github_event("pull_request", payload)
    assert isinstance(event, PullRequest)
    assert (event.action, event.head_sha) == (
        "reopened",
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
    )


def test_a_pull_request_from_a_fork_clones_the_fork() -> None:
    payload = payload_of("github-pull_request-opened.json")
    payload["pull_request"]["head"]["repo"]["clone_url"] = (
        "https://github.com/forker/Hello-World.git"
    )
    event = github_event("pull_request", payload)
    assert isinstance(event, PullRequest)
    assert event.clone_url == "https://github.com/forker/Hello-World.git"
    assert github_clone_url(payload) == HELLO_WORLD


def test_a_pull_request_whose_fork_was_deleted_is_ignored() -> None:
    payload = payload_of("github-pull_request-synchronize.json")
    payload["pull_request"]["head"]["repo"] = None
    assert github_event("pull_request", payload) == Ignored(
        "GitHub pull request #2's head repository was deleted: nothing to clone"
    )


def test_an_unknown_event_is_ignored_naming_it() -> None:
    assert github_event("issues", {}) == Ignored(
        "GitHub event 'issues' does not start runs: Dockyard acts on push, pull_request and ping"
    )


def test_the_clone_url_names_the_repository_never_the_api_url() -> None:
    payload = payload_of("github-push-tag-2025.json")
    urls = github_repository_urls(payload)
    assert urls == (
        "https://github.com/6543/test_ci_tmp.git",
        "git@github.com:6543/test_ci_tmp.git",
        "git://github.com/6543/test_ci_tmp.git",
        "https://github.com/6543/test_ci_tmp",
    )
    assert payload["repository"]["url"] == "https://api.github.com/repos/6543/test_ci_tmp"
    assert payload["repository"]["url"] not in urls
    assert github_clone_url(payload) == "https://github.com/6543/test_ci_tmp.git"


def test_the_ssh_url_is_the_clone_url_when_the_https_one_is_missing() -> None:
    payload = payload_of("github-push.json")
    del payload["repository"]["clone_url"]
    assert github_clone_url(payload) == "git@github.com:binkkatal/sample_app.git"


def test_a_payload_without_a_repository_names_no_url() -> None:
    assert (github_repository_urls({}), github_clone_url({})) == ((), "")


@pytest.mark.parametrize("field", ["ref", "after"])
def test_a_push_without_a_required_field_is_a_payload_error_naming_it(field: str) -> None:
    payload = payload_of("github-push.json")
    del payload[field]
    with pytest.raises(PayloadError) as raised:
        github_event("push", payload)
    assert str(raised.value) == f"push payload has no {field!r}"


def test_a_push_whose_commit_id_is_not_hexadecimal_is_a_payload_error() -> None:
    payload = payload_of("github-push.json")
    payload["head_commit"]["id"] = "--upload-pack=touch /tmp/pwned"
    with pytest.raises(PayloadError) as raised:
        github_event("push", payload)
    assert str(raised.value) == "head_commit.id '--upload-pack=touch /tmp/pwned' is not a commit id"


@pytest.mark.parametrize(
    "sha",
    [
        "FD489864E7642B48EAAD6E3F155C10E46810EC72",
        "fd489864e764",
        "fd489864e7642b48eaad6e3f155c10e46810ec72\n",
        "fd489864e7642b48eaad6e3f155c10e46810ec72" + "0" * 24 + "0",
    ],
)
def test_a_commit_id_must_be_forty_or_sixty_four_lowercase_hex_digits(sha: str) -> None:
    payload = payload_of("github-push.json")
    payload["head_commit"]["id"] = sha
    with pytest.raises(PayloadError) as raised:
        github_event("push", payload)
    assert str(raised.value) == f"head_commit.id {sha!r} is not a commit id"


def test_a_sha256_commit_id_is_a_commit_id() -> None:
    payload = payload_of("github-push.json")
    payload["head_commit"]["id"] = "ab" * 32
    event = github_event("push", payload)
    assert isinstance(event, Push)
    assert event.commit_sha == "ab" * 32


def test_a_push_whose_after_is_garbled_and_has_no_head_commit_is_a_payload_error() -> None:
    payload = payload_of("github-push.json")
    payload["head_commit"] = None
    payload["after"] = "HEAD"
    with pytest.raises(PayloadError) as raised:
        github_event("push", payload)
    assert str(raised.value) == "after 'HEAD' is not a commit id"


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """`payload` with the field at the dotted `path` removed."""
    *parents, last = path.split(".")
    parent = payload
    for key in parents:
        parent = parent[key]
    del parent[last]
    return payload


@pytest.mark.parametrize(
    "path",
    ["action", "number", "pull_request.head.sha", "pull_request.head.ref", "pull_request.base.ref"],
)
def test_a_pull_request_without_a_required_field_is_a_payload_error_naming_it(path: str) -> None:
    payload = without(payload_of("github-pull_request-opened.json"), path)
    with pytest.raises(PayloadError) as raised:
        github_event("pull_request", payload)
    assert str(raised.value) == f"pull request payload has no {path!r}"


def test_a_pull_request_whose_head_sha_is_garbled_is_a_payload_error_naming_it() -> None:
    payload = payload_of("github-pull_request-opened.json")
    payload["pull_request"]["head"]["sha"] = "not-a-sha"
    with pytest.raises(PayloadError) as raised:
        github_event("pull_request", payload)
    assert str(raised.value) == "pull_request.head.sha 'not-a-sha' is not a commit id"


def test_a_pull_request_whose_head_repository_has_no_clone_url_is_a_payload_error() -> None:
    payload = payload_of("github-pull_request-opened.json")
    for field in ("clone_url", "ssh_url"):
        without(payload, f"pull_request.head.repo.{field}")
    with pytest.raises(PayloadError) as raised:
        github_event("pull_request", payload)
    assert str(raised.value) == "pull request payload has no 'pull_request.head.repo.clone_url'"
