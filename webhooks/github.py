"""Turning GitHub deliveries into Dockyard's events. Pure functions over the parsed payload."""

from collections.abc import Mapping
from typing import Any

from webhooks.events import (
    Deletion,
    ForgeEvent,
    Ignored,
    PayloadError,
    Ping,
    PullRequest,
    PullRequestAction,
    Push,
    checked_commit_sha,
    commit_author_text,
    is_zero_sha,
    optional_text,
    payload_value,
    ref_kind_and_name,
    required_commit_sha,
    required_number,
    required_ref,
    required_text,
)

# Every field that names the repository, for finding its project; clone URLs first.
# Never `repository.url`: in modern payloads it is the API URL (api.github.com/repos/...).
_REPOSITORY_URL_FIELDS = ("clone_url", "ssh_url", "git_url", "html_url")
# The URLs to clone from: https first, which needs no key for a public repository. Not git_url:
# GitHub switched off the unauthenticated git:// protocol in 2022.
_CLONE_URL_FIELDS = ("clone_url", "ssh_url")

# The actions after which the pull request's head holds code that has not been tested yet.
_PULL_REQUEST_ACTIONS: dict[str, PullRequestAction] = {
    "opened": "opened",
    "synchronize": "synchronize",
    "reopened": "reopened",
}

# Events that name a ref but carry no commit. GitHub sends a push event for the same change,
# and that push is what Dockyard builds or records.
_EVENTS_COVERED_BY_PUSH = {
    "create": (
        "it names a new branch or tag but no commit; "
        "Dockyard builds it from the push event GitHub sends alongside"
    ),
    "delete": (
        "it names a deleted branch or tag but no commit; "
        "Dockyard records the deletion from the push event GitHub sends alongside"
    ),
    "release": "a release names a tag, and Dockyard builds tags from their push event",
}

_PUSH_PAYLOAD = "push payload"
_PULL_REQUEST_PAYLOAD = "pull request payload"


def github_repository_urls(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Every URL by which the payload names its repository, clone URL first."""
    repository = payload.get("repository")
    if not isinstance(repository, Mapping):
        return ()
    return tuple(
        url
        for field in _REPOSITORY_URL_FIELDS
        if isinstance(url := repository.get(field), str) and url
    )


def github_clone_url(payload: Mapping[str, Any]) -> str:
    """The URL to clone the payload's repository from, or "" when it names none."""
    return _repository_clone_url(payload.get("repository"))


def github_event(event: str, payload: Mapping[str, Any]) -> ForgeEvent:
    """What a GitHub delivery of `event` (the X-GitHub-Event header) asks Dockyard to do."""
    if event == "ping":
        return Ping()
    if event == "push":
        return _push(payload)
    if event == "pull_request":
        return _pull_request(payload)
    if event in _EVENTS_COVERED_BY_PUSH:
        return Ignored(
            f"GitHub event {event!r} does not start runs: {_EVENTS_COVERED_BY_PUSH[event]}"
        )
    return Ignored(
        f"GitHub event {event!r} does not start runs: Dockyard acts on push, pull_request and ping"
    )


def _push(payload: Mapping[str, Any]) -> ForgeEvent:
    ref = required_ref(payload, "ref", payload_name=_PUSH_PAYLOAD)
    after = required_text(payload, "after", payload_name=_PUSH_PAYLOAD)
    kind_and_name = ref_kind_and_name(ref)
    if kind_and_name is None:
        return Ignored(f"pushes to {ref!r} are neither branches nor tags")
    kind, name = kind_and_name
    if payload.get("deleted") is True or is_zero_sha(after):
        return Deletion(kind=kind, name=name)
    head_commit = payload.get("head_commit")
    if isinstance(head_commit, Mapping) and head_commit.get("id") is not None:
        # For an annotated tag `after` is the tag object; head_commit is the commit it points to.
        commit_sha = checked_commit_sha(head_commit["id"], field="head_commit.id")
        message = optional_text(head_commit, "message")
        author = commit_author_text(head_commit)
    else:
        # `after` is then the only id GitHub gives; git peels a tag object to its commit.
        commit_sha = checked_commit_sha(after, field="after")
        message = author = ""
    return Push(
        ref=ref,
        commit_sha=commit_sha,
        commit_message=message,
        commit_author=author,
        kind=kind,
        name=name,
        clone_url=github_clone_url(payload),
        created=payload.get("created") is True,
    )


def _pull_request(payload: Mapping[str, Any]) -> ForgeEvent:
    action = required_text(payload, "action", payload_name=_PULL_REQUEST_PAYLOAD)
    normalised_action = _PULL_REQUEST_ACTIONS.get(action)
    if normalised_action is None:
        return Ignored(
            f"GitHub pull request action {action!r} does not start runs: "
            "only opened, synchronize and reopened bring code to test"
        )
    number = required_number(payload, "number", payload_name=_PULL_REQUEST_PAYLOAD)
    head_repository = payload_value(payload, "pull_request.head.repo")
    if head_repository is None:
        # GitHub keeps a pull request open after its fork is deleted, with head.repo null.
        return Ignored(
            f"GitHub pull request #{number}'s head repository was deleted: nothing to clone"
        )
    clone_url = _repository_clone_url(head_repository)
    if not clone_url:
        raise PayloadError(f"{_PULL_REQUEST_PAYLOAD} has no 'pull_request.head.repo.clone_url'")
    return PullRequest(
        number=number,
        action=normalised_action,
        head_ref=required_ref(
            payload,
            "pull_request.head.ref",
            payload_name=_PULL_REQUEST_PAYLOAD,
            prefix="refs/heads/",
        ),
        head_sha=required_commit_sha(
            payload, "pull_request.head.sha", payload_name=_PULL_REQUEST_PAYLOAD
        ),
        base_ref=required_ref(
            payload,
            "pull_request.base.ref",
            payload_name=_PULL_REQUEST_PAYLOAD,
            prefix="refs/heads/",
        ),
        clone_url=clone_url,
        title=optional_text(payload, "pull_request.title"),
    )


def _repository_clone_url(repository: object) -> str:
    if not isinstance(repository, Mapping):
        return ""
    for field in _CLONE_URL_FIELDS:
        url = repository.get(field)
        if isinstance(url, str) and url:
            return url
    return ""
