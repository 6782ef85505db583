"""Checking that a delivery comes from the forge that knows the project's secret. Pure functions."""

import hashlib
import hmac
import re

GITHUB_SIGNATURE_PREFIX = "sha256="

# What GitLab's Gitlab::Utils.remove_line_breaks removes: "\n" and "\r\n".
_LINE_BREAK = re.compile(r"\r?\n")


def github_signature(*, secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends for `body`: HMAC-SHA256 over the raw bytes."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return GITHUB_SIGNATURE_PREFIX + digest


def github_signature_valid(*, secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` under `secret`, compared in constant time."""
    if not secret or not header or not header.startswith(GITHUB_SIGNATURE_PREFIX):
        return False
    expected = github_signature(secret=secret, body=body).encode("ascii")
    return hmac.compare_digest(expected, header.encode("utf-8", errors="replace"))


def gitlab_token_valid(*, secret: str, header: str | None) -> bool:
    """True when `header` (X-Gitlab-Token) is the project's secret, compared in constant time.

    GitLab signs nothing: it sends the hook's secret token itself, so equality is the check.
    """
    # GitLab strips line breaks from the token before sending it, so a secret saved with a
    # trailing newline (pasted from a file) must lose them too or it would never match.
    expected = _LINE_BREAK.sub("", secret)
    if not expected or header is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), header.encode("utf-8", errors="replace"))
