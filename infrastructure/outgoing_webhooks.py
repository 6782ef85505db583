"""The adapter for outgoing webhooks: POST a JSON notification to a URL someone configured.

Its errors become OutgoingWebhookError; the task that calls it retries with backoff.
"""

from typing import Any
from urllib.parse import urlsplit

import requests

TIMEOUT_SECONDS = 10


class OutgoingWebhookError(Exception):
    """The endpoint could not be reached or did not take the notification."""


def notification_post(*, url: str, payload: dict[str, Any]) -> None:
    try:
        response = requests.post(url, json=payload, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise OutgoingWebhookError(
            f"{endpoint_shown(url)} unreachable: {type(error).__name__}"
        ) from None
    if response.status_code >= 300:
        raise OutgoingWebhookError(f"{endpoint_shown(url)} answered {response.status_code}")


def endpoint_shown(url: str) -> str:
    """The endpoint as messages and logs may show it: scheme and host only.

    An incoming-webhook URL is its own credential (Slack's carry the secret in the path), and
    these messages end up in the worker's log when a delivery is retried.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/…" if host else "an endpoint without a host"
