"""What a delivery means to Dockyard, whichever forge sent it.

The value objects every forge's payload is normalised into, and the few pure checks (refs,
commit ids, required fields) that GitHub's and GitLab's readers share.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from projects.ref_names import ref_name_problem

RefKind = Literal["branch", "tag"]
PullRequestAction = Literal["opened", "synchronize", "reopened"]

BRANCH_REF_PREFIX = "refs/heads/"
TAG_REF_PREFIX = "refs/tags/"

# Full object ids only: SHA-1 (40) or SHA-256 (64) repositories, lowercase as both forges send
# them. Anything else (abbreviations, option-like strings) never reaches `git`.
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Git's "no object": the `after` of a deleted ref, the `before` of a new one.
_ZERO_SHA = re.compile(r"0{40}|0{64}")


class PayloadError(ValueError):
    """The payload lacks or garbles something its event needs; the message names it."""


@dataclass(frozen=True)
class Push:
    """A push of a branch or a tag that points at a commit to build.

    `commit_sha` is the commit the forge says the ref points at (GitHub's head_commit.id,
    GitLab's checkout_sha), which differs from the payload's `after` for an annotated tag.
    When `name` is not given, `kind` and `name` are read from `ref`, so a Push built from a
    ref alone still says what it is.
    """

    ref: str
    commit_sha: str
    commit_message: str
    kind: RefKind = "branch"
    name: str = ""
    clone_url: str = ""
    created: bool = False
    # "Name <email>" as the forge names the commit's author; "" when it does not say.
    commit_author: str = ""

    def __post_init__(self) -> None:
        if not self.name and (kind_and_name := ref_kind_and_name(self.ref)):
            # A frozen dataclass can only fill derived fields through object.__setattr__.
            object.__setattr__(self, "kind", kind_and_name[0])
            object.__setattr__(self, "name", kind_and_name[1])


@dataclass(frozen=True)
class PullRequest:
    """A pull (merge) request whose head changed: build and test `head_sha`, never deploy it.

    `clone_url` is the head repository's, which may be a fork of the project's repository.
    """

    number: int
    action: PullRequestAction
    head_ref: str
    head_sha: str
    base_ref: str
    clone_url: str
    title: str


@dataclass(frozen=True)
class Deletion:
    """A branch or tag that was deleted: recorded, nothing to build."""

    kind: RefKind
    name: str

    def describe(self) -> str:
        """What was deleted, e.g. "tag 'v1.0.0' was deleted"."""
        return f"{self.kind} {self.name!r} was deleted"


@dataclass(frozen=True)
class Ping:
    """The forge checking that the webhook works."""


@dataclass(frozen=True)
class Ignored:
    """A delivery that starts nothing, and why."""

    reason: str


ForgeEvent = Push | PullRequest | Deletion | Ping | Ignored


def ref_kind_and_name(ref: str) -> tuple[RefKind, str] | None:
    """("branch", "main") for refs/heads/main, ("tag", "v1") for refs/tags/v1, else None."""
    if ref.startswith(BRANCH_REF_PREFIX) and len(ref) > len(BRANCH_REF_PREFIX):
        return "branch", ref.removeprefix(BRANCH_REF_PREFIX)
    if ref.startswith(TAG_REF_PREFIX) and len(ref) > len(TAG_REF_PREFIX):
        return "tag", ref.removeprefix(TAG_REF_PREFIX)
    return None


def is_zero_sha(value: object) -> bool:
    """True for git's all-zero object id, which forges send for a ref that does not exist."""
    return isinstance(value, str) and _ZERO_SHA.fullmatch(value) is not None


def checked_commit_sha(value: object, *, field: str) -> str:
    """`value` if it is a full lowercase commit id; otherwise a PayloadError naming `field`."""
    if not isinstance(value, str) or not _COMMIT_SHA.fullmatch(value):
        raise PayloadError(f"{field} {value!r} is not a commit id")
    return value


def payload_value(payload: Mapping[str, Any], path: str) -> object:
    """The value at the dotted `path` ("pull_request.head.sha"), or None if any step is missing."""
    value: object = payload
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def required_text(payload: Mapping[str, Any], path: str, *, payload_name: str) -> str:
    """The non-empty string at `path`; else a PayloadError like "push payload has no 'ref'"."""
    value = payload_value(payload, path)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{payload_name} has no {path!r}")
    return value


def required_ref(
    payload: Mapping[str, Any], path: str, *, payload_name: str, prefix: str = ""
) -> str:
    """The ref name at `path` (with `prefix` before it to make a full ref, for forges that send
    short branch names); a PayloadError naming `path` when git would refuse the name."""
    value = required_text(payload, path, payload_name=payload_name)
    problem = ref_name_problem(prefix + value)
    if problem is not None:
        raise PayloadError(f"{path} {value!r} {problem}")
    return value


def required_number(payload: Mapping[str, Any], path: str, *, payload_name: str) -> int:
    """The whole number at `path` (a pull request's number); otherwise a PayloadError naming it."""
    value = payload_value(payload, path)
    # bool is an int to Python, but `true` is no pull request number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{payload_name} has no {path!r}")
    return value


def required_commit_sha(payload: Mapping[str, Any], path: str, *, payload_name: str) -> str:
    """The commit id at `path`; a PayloadError naming `path` when it is missing or garbled."""
    value = payload_value(payload, path)
    if value is None:
        raise PayloadError(f"{payload_name} has no {path!r}")
    return checked_commit_sha(value, field=path)


def commit_author_text(commit: Mapping[str, Any]) -> str:
    """A commit's author as git writes it ("Name <email>"), from a forge's commit object
    (GitHub's head_commit, an entry of GitLab's commits); "" when it names none."""
    name = optional_text(commit, "author.name").strip()
    email = optional_text(commit, "author.email").strip()
    if name and email:
        return f"{name} <{email}>"[:500]
    return (name or email)[:500]


def optional_text(payload: Mapping[str, Any], path: str) -> str:
    """The string at `path`, or "" when it is missing or not a string (messages, titles)."""
    value = payload_value(payload, path)
    return value if isinstance(value, str) else ""
