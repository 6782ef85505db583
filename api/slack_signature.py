"""Checking that a request comes from Slack, as Slack documents it. Pure functions, no I/O.

https://api.slack.com/authentication/verifying-requests-from-slack: Slack sends
X-Slack-Request-Timestamp and X-Slack-Signature, "v0=" + hex HMAC-SHA256 of
"v0:<timestamp>:<raw body>" under the app's signing secret.
"""

import hashlib
import hmac
import re

SLACK_SIGNATURE_VERSION = "v0"
# Slack's advice: refuse requests more than five minutes away from now, so that a captured
# request cannot be replayed later.
REPLAY_WINDOW_SECONDS = 300

# Whole seconds since the epoch; ASCII digits only, because int() would also accept spaces,
# underscores and other scripts' digits, which Slack never sends.
_TIMESTAMP = re.compile(r"[0-9]{1,20}")


class SlackSignatureError(ValueError):
    """The request is not provably from Slack; the message says why."""


def slack_signature(*, signing_secret: str, timestamp: str, body: bytes) -> str:
    """The X-Slack-Signature value Slack sends for `body` at `timestamp`."""
    base = f"{SLACK_SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return f"{SLACK_SIGNATURE_VERSION}={digest}"


def slack_request_verify(
    *,
    signing_secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
) -> None:
    """Raise SlackSignatureError unless the headers prove Slack sent `body` recently.

    `body` must be the raw request body, before any form or JSON parsing; `now` is the current
    Unix time (a parameter so that callers and tests choose the clock).
    """
    if not signing_secret:
        # An empty key is a key anyone can sign with: refuse rather than accept everything.
        raise SlackSignatureError("no Slack signing secret is configured; refusing every request")
    if not timestamp:
        raise SlackSignatureError("missing X-Slack-Request-Timestamp header")
    if not signature:
        raise SlackSignatureError("missing X-Slack-Signature header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SlackSignatureError(
            f"X-Slack-Request-Timestamp is not a number of seconds: {timestamp[:40]!r}"
        )
    age = now - int(timestamp)
    # Written as "not within" so that a NaN clock reading refuses instead of skipping the check.
    if not abs(age) <= REPLAY_WINDOW_SECONDS:
        if age < 0:
            raise SlackSignatureError(
                f"timestamp from the future: {-age:.0f} seconds ahead of this server's clock, "
                f"more than the {REPLAY_WINDOW_SECONDS} allowed"
            )
        raise SlackSignatureError(
            f"stale timestamp: signed {age:.0f} seconds ago, "
            f"more than the {REPLAY_WINDOW_SECONDS} allowed"
        )
    expected = slack_signature(signing_secret=signing_secret, timestamp=timestamp, body=body)
    # compare_digest refuses str with non-ASCII characters, so compare bytes; a header with
    # such characters can never match the hex digest anyway.
    if not hmac.compare_digest(
        expected.encode("ascii"), signature.encode("utf-8", errors="replace")
    ):
        raise SlackSignatureError("bad signature: X-Slack-Signature does not match the body")
