"""Checking that a delivery comes from the forge that knows the project's secret. Pure functions."""

import hashlib
import hmac

GITHUB_SIGNATURE_PREFIX = "sha256="


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
