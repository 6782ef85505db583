"""Turning GitLab deliveries into Dockyard's events. Pure functions over the parsed payload."""

from collections.abc import Mapping
from typing import Any

from webhooks.events import (
    Deletion,
    ForgeEvent,
    Ignored,
    PullRequest,
    PullRequestAction,
    Push,
    checked_commit_sha,
    commit_author_text,
    is_zero_sha,
    optional_text,
    ref_kind_and_name,
    required_commit_sha,
    required_number,
    required_ref,
    required_text,
)

SYSTEM_HOOK = "System Hook"
# The X-Gitlab-Event values Dockyard acts on, and the object_kind their payloads carry.
_HOOK_OBJECT_KINDS = {
    "Push Hook": "push",
    "Tag Push Hook": "tag_push",
    "Merge Request Hook": "merge_request",
}

# Every field that names the repository, for finding its project. project.url and
# repository.url are left out on purpose: they are older aliases whose form changes from payload
# to payload (scp-like "git@host:path" in push, "ssh://git@host/path" in the tag push docs
# example, http in the merge request one) and name no repository the fields below do not.
_REPOSITORY_URL_PATHS = (
    "project.git_http_url",
    "project.git_ssh_url",
    "repository.git_http_url",
    "repository.git_ssh_url",
    # Deprecated duplicates, for payloads from GitLab versions that lack the git_* names.
    "project.http_url",
    "project.ssh_url",
)
# The URLs to clone from: https first, which needs no deploy key for a public project.
_CLONE_URL_PATHS = (
    "project.git_http_url",
    "repository.git_http_url",
    "project.http_url",
    "project.git_ssh_url",
    "repository.git_ssh_url",
    "project.ssh_url",
)

# Merge request actions after which the source branch holds code that has not been tested yet.
_MERGE_REQUEST_ACTIONS: dict[str, PullRequestAction] = {
    "open": "opened",
    "reopen": "reopened",
    "update": "synchronize",
}

_PUSH_PAYLOAD = "push payload"
_MERGE_REQUEST_PAYLOAD = "merge request payload"


def gitlab_repository_urls(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Every clone URL by which the payload names its project, without repeats, https first."""
    urls = (optional_text(payload, path) for path in _REPOSITORY_URL_PATHS)
    return tuple(dict.fromkeys(url for url in urls if url))


def gitlab_clone_url(payload: Mapping[str, Any]) -> str:
    """The URL to clone the payload's project from, or "" when it names none."""
    for path in _CLONE_URL_PATHS:
        if url := optional_text(payload, path):
            return url
    return ""


def gitlab_event(event_header: str, payload: Mapping[str, Any]) -> ForgeEvent:
    """What a GitLab delivery with X-Gitlab-Event `event_header` asks Dockyard to do."""
    if event_header == SYSTEM_HOOK:
        # A system hook sends every kind of event under this one header; the payload says which.
        object_kind = payload.get("object_kind") or payload.get("event_name")
        if object_kind not in _HOOK_OBJECT_KINDS.values():
            return Ignored(f"GitLab system hook event {object_kind!r} does not start runs")
    else:
        object_kind = _HOOK_OBJECT_KINDS.get(event_header)
        if object_kind is None:
            return Ignored(
                f"GitLab event {event_header!r} does not start runs: "
                "Dockyard acts on Push Hook, Tag Push Hook and Merge Request Hook"
            )
    if object_kind == "merge_request":
        return _merge_request(payload)
    return _push(payload)


def _push(payload: Mapping[str, Any]) -> ForgeEvent:
    ref = required_ref(payload, "ref", payload_name=_PUSH_PAYLOAD)
    after = required_text(payload, "after", payload_name=_PUSH_PAYLOAD)
    kind_and_name = ref_kind_and_name(ref)
    if kind_and_name is None:
        return Ignored(f"pushes to {ref!r} are neither branches nor tags")
    kind, name = kind_and_name
    if is_zero_sha(after):
        return Deletion(kind=kind, name=name)
    checkout_sha = payload.get("checkout_sha")
    if checkout_sha is None:
        # GitLab fills checkout_sha by peeling the tag when it builds the hook, and finds no
        # commit when the tag was deleted again in between or points at a tree or blob.
        return Ignored(
            f"GitLab sent no checkout_sha for {kind} {name!r}: "
            "it no longer points at a commit, so there is nothing to build"
        )
    # checkout_sha, not `after`: for an annotated tag `after` is the tag object.
    commit_sha = checked_commit_sha(checkout_sha, field="checkout_sha")
    commit = _pushed_commit(payload, commit_sha)
    return Push(
        ref=ref,
        commit_sha=commit_sha,
        commit_message=optional_text(commit, "message"),
        commit_author=commit_author_text(commit),
        kind=kind,
        name=name,
        clone_url=gitlab_clone_url(payload),
        created=is_zero_sha(payload.get("before")),
    )


def _pushed_commit(payload: Mapping[str, Any], commit_sha: str) -> Mapping[str, Any]:
    # The top-level "message" is an annotated tag's own message, not the commit's. The commit
    # is among `commits` (the newest 20) unless the push added none, e.g. a lightweight tag.
    commits = payload.get("commits")
    # Old GitLab versions sent "" rather than [] for a push without commits.
    if not isinstance(commits, list):
        return {}
    for commit in commits:
        if isinstance(commit, Mapping) and commit.get("id") == commit_sha:
            return commit
    return {}


def _merge_request(payload: Mapping[str, Any]) -> ForgeEvent:
    action = required_text(payload, "object_attributes.action", payload_name=_MERGE_REQUEST_PAYLOAD)
    normalised_action = _MERGE_REQUEST_ACTIONS.get(action)
    if normalised_action is None:
        return Ignored(
            f"GitLab merge request action {action!r} does not start runs: "
            "only open, reopen and update with new commits bring code to test"
        )
    number = required_number(payload, "object_attributes.iid", payload_name=_MERGE_REQUEST_PAYLOAD)
    if action == "update" and not optional_text(payload, "object_attributes.oldrev"):
        # GitLab sends oldrev (the previous head) only when the update changed the code.
        return Ignored(
            f"GitLab merge request !{number} was updated without new commits (no 'oldrev'): "
            "GitLab sends update for title, description, label and reviewer edits too"
        )
    return PullRequest(
        number=number,
        action=normalised_action,
        head_ref=required_ref(
            payload,
            "object_attributes.source_branch",
            payload_name=_MERGE_REQUEST_PAYLOAD,
            prefix="refs/heads/",
        ),
        head_sha=required_commit_sha(
            payload, "object_attributes.last_commit.id", payload_name=_MERGE_REQUEST_PAYLOAD
        ),
        base_ref=required_ref(
            payload,
            "object_attributes.target_branch",
            payload_name=_MERGE_REQUEST_PAYLOAD,
            prefix="refs/heads/",
        ),
        # The source project's, which is a fork when the merge request comes from one.
        clone_url=required_text(
            payload, "object_attributes.source.git_http_url", payload_name=_MERGE_REQUEST_PAYLOAD
        ),
        title=optional_text(payload, "object_attributes.title"),
    )
