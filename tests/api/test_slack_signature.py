import hashlib
import hmac

import pytest

from api.slack_signature import (
    REPLAY_WINDOW_SECONDS,
    SlackSignatureError,
    slack_request_verify,
    slack_signature,
)

# The worked example in Slack's "Verifying requests from Slack"
# (https://api.slack.com/authentication/verifying-requests-from-slack), as Slack's own
# python-slack-sdk tests use it (tests/slack_sdk/signature/test_signature_verifier.py).
DOCS_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOCS_TIMESTAMP = "1531420618"
DOCS_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554"
    b"%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOCS_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
DOCS_NOW = float(DOCS_TIMESTAMP)

SECRET = "a-dockyard-test-signing-secret"
NOW = 1_767_225_600.0
TIMESTAMP = str(int(NOW))
BODY = b"token=x&team_id=T1&command=%2Fdockyard&text=deploy+web+42+to+staging"


def independent_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's recipe written out again, so the tests check the scheme and not an echo."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify(
    *,
    signing_secret: str = SECRET,
    timestamp: str | None = TIMESTAMP,
    signature: str | None = None,
    body: bytes = BODY,
    now: float = NOW,
) -> None:
    if signature is None:
        signature = independent_signature(SECRET, TIMESTAMP, BODY)
    slack_request_verify(
        signing_secret=signing_secret,
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=now,
    )


def test_it_matches_slacks_documented_example() -> None:
    assert (
        slack_signature(signing_secret=DOCS_SECRET, timestamp=DOCS_TIMESTAMP, body=DOCS_BODY)
        == DOCS_SIGNATURE
    )
    slack_request_verify(
        signing_secret=DOCS_SECRET,
        timestamp=DOCS_TIMESTAMP,
        signature=DOCS_SIGNATURE,
        body=DOCS_BODY,
        now=DOCS_NOW,
    )


def test_it_agrees_with_an_independent_hmac() -> None:
    assert slack_signature(signing_secret=SECRET, timestamp=TIMESTAMP, body=BODY) == (
        independent_signature(SECRET, TIMESTAMP, BODY)
    )


def test_a_fresh_correctly_signed_request_is_accepted() -> None:
    verify()


@pytest.mark.parametrize("offset", [-REPLAY_WINDOW_SECONDS, REPLAY_WINDOW_SECONDS, 0.5, -0.5])
def test_a_request_at_the_edge_of_the_replay_window_is_accepted(offset: float) -> None:
    verify(now=NOW + offset)


def test_it_rejects_a_signature_made_with_another_secret() -> None:
    signature = independent_signature("another secret entirely", TIMESTAMP, BODY)
    with pytest.raises(SlackSignatureError, match=r"^bad signature"):
        verify(signature=signature)


def test_it_rejects_a_body_changed_by_one_byte() -> None:
    with pytest.raises(SlackSignatureError, match=r"^bad signature"):
        verify(body=BODY.replace(b"42", b"43"))
    with pytest.raises(SlackSignatureError, match=r"^bad signature"):
        slack_request_verify(
            signing_secret=DOCS_SECRET,
            timestamp=DOCS_TIMESTAMP,
            signature=DOCS_SIGNATURE,
            body=DOCS_BODY[:-1] + b"d",
            now=DOCS_NOW,
        )


def test_it_rejects_a_signature_for_another_timestamp() -> None:
    # The timestamp is signed: moving it (to dodge the replay window) breaks the signature.
    later = str(int(NOW) + 60)
    with pytest.raises(SlackSignatureError, match=r"^bad signature"):
        verify(timestamp=later, now=NOW + 60)


@pytest.mark.parametrize(
    "signature",
    [
        "v0=" + "0" * 64,
        DOCS_SIGNATURE,
        "v1=" + independent_signature(SECRET, TIMESTAMP, BODY)[3:],
        independent_signature(SECRET, TIMESTAMP, BODY)[3:],
        independent_signature(SECRET, TIMESTAMP, BODY).upper(),
        "v0=ünïcode",
    ],
)
def test_it_rejects_wrong_or_garbled_signatures(signature: str) -> None:
    with pytest.raises(SlackSignatureError, match=r"^bad signature"):
        verify(signature=signature)


@pytest.mark.parametrize("timestamp", [None, ""])
def test_it_rejects_a_missing_timestamp_header(timestamp: str | None) -> None:
    with pytest.raises(SlackSignatureError, match=r"^missing X-Slack-Request-Timestamp header$"):
        verify(timestamp=timestamp)


@pytest.mark.parametrize("signature", [None, ""])
def test_it_rejects_a_missing_signature_header(signature: str | None) -> None:
    with pytest.raises(SlackSignatureError, match=r"^missing X-Slack-Signature header$"):
        slack_request_verify(
            signing_secret=SECRET, timestamp=TIMESTAMP, signature=signature, body=BODY, now=NOW
        )


def test_it_rejects_a_request_signed_301_seconds_ago() -> None:
    with pytest.raises(SlackSignatureError) as refusal:
        verify(now=NOW + 301)
    assert (
        str(refusal.value) == "stale timestamp: signed 301 seconds ago, more than the 300 allowed"
    )


def test_it_rejects_a_request_signed_301_seconds_in_the_future() -> None:
    with pytest.raises(SlackSignatureError) as refusal:
        verify(now=NOW - 301)
    assert str(refusal.value) == (
        "timestamp from the future: 301 seconds ahead of this server's clock, "
        "more than the 300 allowed"
    )


def test_it_rejects_slacks_documented_example_replayed_today() -> None:
    with pytest.raises(SlackSignatureError, match=r"^stale timestamp"):
        slack_request_verify(
            signing_secret=DOCS_SECRET,
            timestamp=DOCS_TIMESTAMP,
            signature=DOCS_SIGNATURE,
            body=DOCS_BODY,
            now=NOW,
        )


def test_it_refuses_when_the_clock_reading_is_not_a_number() -> None:
    with pytest.raises(SlackSignatureError, match=r"^stale timestamp"):
        verify(now=float("nan"))


@pytest.mark.parametrize(
    "timestamp", ["soon", "1.5e9", "-1767225600", " 1767225600", "1_767_225_600", "١٧٦٧٢٢٥٦٠٠"]
)
def test_it_rejects_a_timestamp_that_is_not_a_whole_number(timestamp: str) -> None:
    with pytest.raises(SlackSignatureError) as refusal:
        verify(timestamp=timestamp)
    assert str(refusal.value) == (
        f"X-Slack-Request-Timestamp is not a number of seconds: {timestamp!r}"
    )


def test_a_huge_timestamp_is_cut_short_in_the_message_and_does_not_raise_anything_else() -> None:
    with pytest.raises(SlackSignatureError) as refusal:
        verify(timestamp="9" * 5000)
    assert str(refusal.value) == (
        f"X-Slack-Request-Timestamp is not a number of seconds: {'9' * 40!r}"
    )


def test_it_refuses_everything_when_the_signing_secret_is_empty() -> None:
    signature = independent_signature("", TIMESTAMP, BODY)
    with pytest.raises(SlackSignatureError) as refusal:
        verify(signing_secret="", signature=signature)
    assert str(refusal.value) == "no Slack signing secret is configured; refusing every request"


def test_the_error_is_a_value_error() -> None:
    assert issubclass(SlackSignatureError, ValueError)
