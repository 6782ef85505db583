"""Receiving a delivery: check it, store it, act on it once."""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.db import IntegrityError, transaction

from pipelines.models import Forge, PipelineRun, Project, Trigger
from pipelines.selectors import project_for_repository
from pipelines.services import run_create
from webhooks.events import Deletion, ForgeEvent, Ignored, PayloadError, Ping, Push
from webhooks.github import github_event, github_repository_urls
from webhooks.models import Delivery
from webhooks.signatures import github_signature_valid

logger = logging.getLogger(__name__)

# Never stored, never logged.
SECRET_HEADERS = frozenset(
    {"x-hub-signature", "x-hub-signature-256", "x-gitlab-token", "authorization", "cookie"}
)


class WebhookRejected(Exception):
    """A delivery refused with an HTTP status and a message for the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DeliveryOutcome:
    status: int
    message: str
    run: PipelineRun | None


def github_delivery_receive(
    *, headers: Mapping[str, str], body: bytes, content_type: str
) -> DeliveryOutcome:
    """Verify, store and act on one GitHub delivery; a redelivery gets the first outcome."""
    event = _required_header(headers, "X-GitHub-Event")
    delivery_id = _required_header(headers, "X-GitHub-Delivery")
    payload = _parse_payload(body, content_type)
    urls = github_repository_urls(payload)
    if not urls:
        raise WebhookRejected(400, "malformed body: the payload names no repository")
    project = project_for_repository(urls)
    if project is None:
        raise WebhookRejected(404, f"no project for repository {urls[0]}")
    signature = headers.get("X-Hub-Signature-256")
    if not signature:
        raise WebhookRejected(401, "missing header X-Hub-Signature-256: set the webhook's secret")
    if not github_signature_valid(secret=project.webhook_secret, body=body, header=signature):
        raise WebhookRejected(
            401, "X-Hub-Signature-256 does not match the body: check the webhook's secret"
        )
    try:
        forge_event = github_event(event, payload)
    except PayloadError as error:
        raise WebhookRejected(400, f"malformed body: {error}") from None
    return _deliver(
        forge=Forge.GITHUB,
        delivery_id=delivery_id,
        event=event,
        project=project,
        headers=headers,
        body=body,
        forge_event=forge_event,
    )


def _deliver(
    *,
    forge: str,
    delivery_id: str,
    event: str,
    project: Project,
    headers: Mapping[str, str],
    body: bytes,
    forge_event: ForgeEvent,
) -> DeliveryOutcome:
    with transaction.atomic():
        try:
            # The unique constraint, not a look-up first, decides which of several concurrent
            # copies of one delivery acts: the others wait here, then fail and read its outcome.
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    forge=forge,
                    delivery_id=delivery_id,
                    event=event,
                    project=project,
                    headers=_storable_headers(headers),
                    body=body,
                )
        except IntegrityError:
            first = Delivery.objects.select_related("run").get(forge=forge, delivery_id=delivery_id)
            return DeliveryOutcome(
                status=first.status_code or 202, message=first.outcome, run=first.run
            )
        outcome = _act(project, forge_event)
        Delivery.objects.filter(pk=delivery.pk).update(
            status_code=outcome.status, outcome=outcome.message, run=outcome.run
        )
    logger.info("%s delivery %s (%s): %s", forge, delivery_id, event, outcome.message)
    return outcome


def _act(project: Project, forge_event: ForgeEvent) -> DeliveryOutcome:
    match forge_event:
        case Ping():
            return DeliveryOutcome(status=200, message="pong", run=None)
        case Ignored(reason=reason):
            return DeliveryOutcome(status=202, message=f"ignored: {reason}", run=None)
        case Deletion():
            return DeliveryOutcome(
                status=202, message=f"ignored: {forge_event.describe()}", run=None
            )
        case Push(ref=ref, commit_sha=sha, commit_message=message):
            run = run_create(
                project=project,
                ref=ref,
                commit_sha=sha,
                commit_message=message,
                trigger=Trigger.WEBHOOK,
            )
            return DeliveryOutcome(
                status=202, message=f"run #{run.number} queued for {sha[:12]}", run=run
            )
    raise AssertionError(f"unhandled event {forge_event!r}")


def _required_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookRejected(400, f"missing header {name}")
    return value


def _parse_payload(body: bytes, content_type: str) -> dict[str, Any]:
    if content_type == "application/json":
        raw = body
    elif content_type == "application/x-www-form-urlencoded":
        # GitHub's other delivery format: the JSON is in the form field "payload".
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "malformed body: not a URL-encoded form") from None
        if "payload" not in fields:
            raise WebhookRejected(400, "malformed body: the form has no 'payload' field")
        raw = fields["payload"][0].encode("utf-8")
    else:
        raise WebhookRejected(
            415, f"unsupported content type {content_type or 'none'!r}: send application/json"
        )
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRejected(400, f"malformed body: not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "malformed body: the JSON is not an object")
    return payload


def _storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in SECRET_HEADERS}
