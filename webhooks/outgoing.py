"""The adapter for outgoing webhooks: POST a JSON notification to a URL someone configured.

Its errors become OutgoingWebhookError; the task that calls it retries with backoff.
"""

from typing import Any

import requests

TIMEOUT_SECONDS = 10


class OutgoingWebhookError(Exception):
    """The endpoint could not be reached or did not take the notification."""


def notification_post(*, url: str, payload: dict[str, Any]) -> None:
    try:
        response = requests.post(url, json=payload, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise OutgoingWebhookError(f"{url} unreachable: {type(error).__name__}") from None
    if response.status_code >= 300:
        raise OutgoingWebhookError(f"{url} answered {response.status_code}")
