"""What a delivery means to Dockyard, whichever forge sent it."""

from dataclasses import dataclass


class PayloadError(ValueError):
    """The payload lacks or garbles something its event needs; the message names it."""


@dataclass(frozen=True)
class Push:
    """A push of a branch or a tag that points at a commit to build."""

    ref: str
    commit_sha: str
    commit_message: str


@dataclass(frozen=True)
class Ping:
    """The forge checking that the webhook works."""


@dataclass(frozen=True)
class Ignored:
    """A delivery that starts nothing, and why."""

    reason: str


ForgeEvent = Push | Ping | Ignored
