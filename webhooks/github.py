"""Turning GitHub deliveries into Dockyard's events. Pure functions over the parsed payload."""

import re
from typing import Any

from webhooks.events import ForgeEvent, Ignored, PayloadError, Ping, Push

_ZERO_SHA = re.compile(r"^0+$")
_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
# Clone URLs first: `repository.url` is the API URL in modern payloads, never a clone URL.
_REPOSITORY_URL_FIELDS = ("clone_url", "ssh_url", "git_url", "html_url")


def github_repository_urls(payload: dict[str, Any]) -> tuple[str, ...]:
    """Every URL by which the payload names its repository, clone URL first."""
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return ()
    return tuple(
        url
        for field in _REPOSITORY_URL_FIELDS
        if isinstance(url := repository.get(field), str) and url
    )


def github_event(event: str, payload: dict[str, Any]) -> ForgeEvent:
    """What a GitHub delivery of `event` (the X-GitHub-Event header) asks Dockyard to do."""
    if event == "ping":
        return Ping()
    if event == "push":
        return _push(payload)
    return Ignored(f"GitHub event {event!r} does not start runs")


def _push(payload: dict[str, Any]) -> ForgeEvent:
    ref = _required_str(payload, "ref")
    after = _required_str(payload, "after")
    if payload.get("deleted") is True or _ZERO_SHA.match(after):
        return Ignored(f"{_describe_ref(ref)} was deleted")
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return Ignored(f"pushes to {ref!r} are neither branches nor tags")
    head_commit = payload.get("head_commit")
    # For an annotated tag `after` is the tag object; head_commit is the commit it points to.
    commit_sha = after
    message = ""
    if isinstance(head_commit, dict):
        commit_sha = head_commit.get("id") or after
        message = str(head_commit.get("message") or "")
    if not isinstance(commit_sha, str) or not _SHA.match(commit_sha):
        raise PayloadError(f"head_commit.id {commit_sha!r} is not a commit id")
    return Push(ref=ref, commit_sha=commit_sha, commit_message=message)


def _required_str(payload: dict[str, Any], field: str) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"push payload has no {field!r}")
    return value


def _describe_ref(ref: str) -> str:
    if ref.startswith("refs/heads/"):
        return f"branch {ref.removeprefix('refs/heads/')!r}"
    if ref.startswith("refs/tags/"):
        return f"tag {ref.removeprefix('refs/tags/')!r}"
    return repr(ref)
