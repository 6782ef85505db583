"""Receiving deliveries (check, store, act once) and reporting runs back to the forge."""

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from infrastructure.forge_api import CommitStatus, commit_status_send
from pipelines.models import PipelineRun, RunEvent, RunKind, Trigger
from pipelines.services import run_create, runs_supersede
from projects.models import Forge, Project
from projects.selectors import project_for_repository
from projects.trigger_rules import push_refusal
from webhooks.events import Deletion, ForgeEvent, Ignored, PayloadError, Ping, PullRequest, Push
from webhooks.github import github_event, github_repository_urls
from webhooks.gitlab import gitlab_event, gitlab_repository_urls
from webhooks.models import CommitStatusReport, Delivery
from webhooks.signatures import github_signature_valid, gitlab_token_valid

logger = logging.getLogger(__name__)

# Never stored, never logged.
SECRET_HEADERS = frozenset(
    {"x-hub-signature", "x-hub-signature-256", "x-gitlab-token", "authorization", "cookie"}
)
# How long a redelivery waits for the first copy to finish acting before answering.
FIRST_OUTCOME_WAIT_SECONDS = 10


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


@dataclass(frozen=True)
class ForgeReader:
    """How one forge's deliveries are read: headers, repository, authenticity, meaning."""

    forge: Forge
    event_header: str
    # Headers that identify a delivery across redeliveries, the first one present wins.
    delivery_headers: tuple[str, ...]
    repository_urls: Callable[[Mapping[str, Any]], tuple[str, ...]]
    event: Callable[[str, Mapping[str, Any]], ForgeEvent]
    # None when the delivery proves it knows the project's secret, else why it does not.
    authenticity_problem: Callable[[Project, Mapping[str, str], bytes], str | None]
    pull_request_ref: str


def _github_authenticity(project: Project, headers: Mapping[str, str], body: bytes) -> str | None:
    signature = headers.get("X-Hub-Signature-256")
    if not signature:
        return "missing header X-Hub-Signature-256: set the webhook's secret"
    if not github_signature_valid(secret=project.webhook_secret, body=body, header=signature):
        return "X-Hub-Signature-256 does not match the body: check the webhook's secret"
    return None


def _gitlab_authenticity(project: Project, headers: Mapping[str, str], body: bytes) -> str | None:
    token = headers.get("X-Gitlab-Token")
    if not token:
        return "missing header X-Gitlab-Token: set the webhook's secret token"
    if not gitlab_token_valid(secret=project.webhook_secret, header=token):
        return "X-Gitlab-Token does not match: check the webhook's secret token"
    return None


GITHUB = ForgeReader(
    forge=Forge.GITHUB,
    event_header="X-GitHub-Event",
    delivery_headers=("X-GitHub-Delivery",),
    repository_urls=github_repository_urls,
    event=github_event,
    authenticity_problem=_github_authenticity,
    pull_request_ref="refs/pull/{number}/head",
)
GITLAB = ForgeReader(
    forge=Forge.GITLAB,
    event_header="X-Gitlab-Event",
    # Idempotency-Key stays the same across GitLab's retries and "Resend Request"; older
    # GitLab versions only send the event UUID.
    delivery_headers=("Idempotency-Key", "X-Gitlab-Event-UUID"),
    repository_urls=gitlab_repository_urls,
    event=gitlab_event,
    authenticity_problem=_gitlab_authenticity,
    pull_request_ref="refs/merge-requests/{number}/head",
)
READERS = {reader.forge: reader for reader in (GITHUB, GITLAB)}
# What Delivery's columns hold; a delivery id keeps room for the suffix a replay adds.
EVENT_MAX_LENGTH = 100
DELIVERY_ID_MAX_LENGTH = 150


def delivery_receive(
    *, reader: ForgeReader, headers: Mapping[str, str], body: bytes, content_type: str
) -> DeliveryOutcome:
    """Verify, store, then act on one delivery; a redelivery gets the first outcome."""
    event = _required_header(headers, (reader.event_header,), max_length=EVENT_MAX_LENGTH)
    delivery_id = _required_header(
        headers, reader.delivery_headers, max_length=DELIVERY_ID_MAX_LENGTH
    )
    payload = _parse_payload(body, content_type, form_allowed=reader.forge == Forge.GITHUB)
    urls = reader.repository_urls(payload)
    if not urls:
        raise WebhookRejected(400, "malformed body: the payload names no repository")
    project = project_for_repository(forge=reader.forge, urls=urls)
    if project is None:
        raise WebhookRejected(404, f"no {reader.forge.label} project for repository {urls[0]}")
    if not project.webhook_secret:
        # Fail closed: a project nobody gave a secret accepts nothing.
        raise WebhookRejected(401, f"project {project.slug} has no webhook secret; set one")
    problem = reader.authenticity_problem(project, headers, body)
    if problem:
        raise WebhookRejected(401, problem)
    try:
        forge_event = reader.event(event, payload)
    except PayloadError as error:
        raise WebhookRejected(400, f"malformed body: {error}") from None
    decision = _decide(project, reader, forge_event)
    # A delivery that starts nothing is stored with its answer at once; one that starts a run
    # is stored and committed first, so that a crash while acting leaves it in the inbox to be
    # acted on later, never lost.
    answer = (
        {"status_code": decision.status, "outcome": decision.message, "acted_at": timezone.now()}
        if isinstance(decision, DeliveryOutcome)
        else {}
    )
    # Outside a transaction the INSERT commits by itself: no BEGIN and COMMIT round trips for
    # the many deliveries that do nothing else. Inside a caller's, a savepoint lets it go on
    # after a duplicate.
    storing = (
        transaction.atomic()
        if transaction.get_connection().in_atomic_block
        else contextlib.nullcontext()
    )
    try:
        with storing:
            delivery = Delivery.objects.create(
                forge=reader.forge,
                delivery_id=delivery_id,
                event=event,
                project=project,
                headers=_storable_headers(headers),
                body=body,
                **answer,
            )
    except IntegrityError:
        # The unique constraint, not a look-up first, decides which of several concurrent
        # copies acts: the others read its outcome.
        return _first_outcome(reader.forge, delivery_id)
    if isinstance(decision, DeliveryOutcome):
        _log(delivery, decision)
        return decision
    return delivery_act(delivery_id=delivery.pk, forge_event=forge_event)


def delivery_act(*, delivery_id: int, forge_event: ForgeEvent | None = None) -> DeliveryOutcome:
    """Act on a stored delivery once: the first caller records the outcome, later ones read it."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=delivery_id)
        )
        if delivery.acted_at is not None:
            return _outcome_of(delivery)
        if delivery.project is None:
            outcome = DeliveryOutcome(
                status=202, message="ignored: the project was deleted", run=None
            )
        else:
            if forge_event is None:
                forge_event = _stored_event(delivery)
            decision = _decide(delivery.project, READERS[Forge(delivery.forge)], forge_event)
            if isinstance(decision, RunRequest):
                outcome = _queue(delivery.project, decision)
            else:
                outcome = decision
        delivery.status_code, delivery.outcome, delivery.run = (
            outcome.status,
            outcome.message,
            outcome.run,
        )
        delivery.acted_at = timezone.now()
        delivery.save(update_fields=["status_code", "outcome", "run", "acted_at"])
    _log(delivery, outcome)
    return outcome


def delivery_replay(*, delivery: Delivery) -> tuple[Delivery, DeliveryOutcome]:
    """Act on a stored delivery again, as a new delivery that points at the original."""
    original = delivery.replay_of or delivery
    replay = Delivery.objects.create(
        forge=original.forge,
        delivery_id=f"{original.delivery_id}:replay:{timezone.now().timestamp():.6f}",
        event=original.event,
        project=original.project,
        headers=original.headers,
        body=bytes(original.body),
        replay_of=original,
    )
    return replay, delivery_act(delivery_id=replay.pk)


def deliveries_unacted(older_than_seconds: float = 60) -> list[Delivery]:
    """Deliveries stored but never acted on (the process died in between), oldest first."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Delivery.objects.filter(acted_at__isnull=True, received_at__lt=cutoff).order_by(
            "received_at"
        )
    )


def commit_status_report(*, run_id: int, event_id: int) -> None:
    """Tell the forge the run's state as of `event_id`, unless a newer one was told already.

    Raises ForgeAPIError when the forge does not take it; the task retries with backoff.
    """
    run = PipelineRun.objects.select_related("project").get(pk=run_id)
    project = run.project
    if not project.forge_token or not project.forge_repository:
        return
    event = RunEvent.objects.get(pk=event_id, run=run, stage__isnull=True)
    CommitStatusReport.objects.get_or_create(run=run)
    with transaction.atomic():
        # One report per run at a time, and never an older state after a newer one.
        report = CommitStatusReport.objects.select_for_update().get(run=run)
        if report.last_event_id >= event_id:
            return
        status = CommitStatus(
            commit_sha=run.commit_sha,
            run_state=event.to_status,
            target_url=settings.PUBLIC_URL + reverse("run-detail", args=[run.pk]),
            description=f"{project.slug} #{run.number} {event.to_status}",
            ref=run.branch or run.ref.removeprefix("refs/tags/"),
        )
        try:
            state = commit_status_send(
                forge=project.forge,
                api_url=project.forge_api_url,
                repository=project.forge_repository,
                token=project.forge_token,
                status=status,
            )
        except Exception as error:
            CommitStatusReport.objects.filter(pk=report.pk).update(last_error=str(error)[:2000])
            raise
        report.last_event_id, report.last_state, report.last_error = event_id, state, ""
        report.save(update_fields=["last_event_id", "last_state", "last_error", "updated_at"])


def commit_status_give_up(*, run_id: int, event_id: int, error: Exception) -> None:
    """Note that the report of `event_id` ran out of retries, so nobody sends it again."""
    if not PipelineRun.objects.filter(pk=run_id).exists():
        return
    CommitStatusReport.objects.get_or_create(run_id=run_id)
    CommitStatusReport.objects.filter(run_id=run_id, gave_up_event_id__lt=event_id).update(
        gave_up_event_id=event_id, last_error=str(error)[:2000]
    )
    logger.warning("gave up telling the forge about run %s (event %s): %s", run_id, event_id, error)


@dataclass(frozen=True)
class RunRequest:
    """The fields of the run a delivery asks for."""

    ref: str
    commit_sha: str
    commit_message: str
    kind: str
    pull_request: int | None = None
    target_branch: str = ""
    commit_author: str = ""


def _decide(
    project: Project, reader: ForgeReader, forge_event: ForgeEvent
) -> DeliveryOutcome | RunRequest:
    """The answer to a delivery that starts nothing, or the run it asks for. No writes."""
    match forge_event:
        case Ping():
            return DeliveryOutcome(status=200, message="pong", run=None)
        case Ignored(reason=reason):
            return DeliveryOutcome(status=202, message=f"ignored: {reason}", run=None)
        case Deletion():
            return DeliveryOutcome(
                status=202, message=f"ignored: {forge_event.describe()}", run=None
            )
        case Push():
            refusal = push_refusal(
                kind=forge_event.kind,
                name=forge_event.name,
                commit_message=forge_event.commit_message,
                branch_filter=project.branch_filter,
                tag_filter=project.tag_filter,
            )
            if refusal:
                return DeliveryOutcome(status=202, message=f"skipped: {refusal}", run=None)
            return RunRequest(
                ref=forge_event.ref,
                commit_sha=forge_event.commit_sha,
                commit_message=forge_event.commit_message,
                commit_author=forge_event.commit_author,
                kind=RunKind.TAG if forge_event.kind == "tag" else RunKind.BRANCH,
            )
        case PullRequest():
            if not project.build_pull_requests:
                return DeliveryOutcome(
                    status=202,
                    message="skipped: the project does not build pull requests",
                    run=None,
                )
            return RunRequest(
                # The forge keeps every pull request's head under this ref of the project's own
                # repository, forks included: Dockyard never clones a fork's URL.
                ref=reader.pull_request_ref.format(number=forge_event.number),
                commit_sha=forge_event.head_sha,
                commit_message=forge_event.title,
                kind=RunKind.PULL_REQUEST,
                pull_request=forge_event.number,
                target_branch=forge_event.base_ref,
            )
    raise AssertionError(f"unhandled event {forge_event!r}")


def _queue(project: Project, request: RunRequest) -> DeliveryOutcome:
    run = run_create(
        project=project,
        trigger=Trigger.WEBHOOK,
        ref=request.ref,
        commit_sha=request.commit_sha,
        commit_message=request.commit_message,
        commit_author=request.commit_author,
        kind=request.kind,
        pull_request=request.pull_request,
        target_branch=request.target_branch,
    )
    message = f"run #{run.number} queued for {run.commit_sha[:12]}"
    if project.cancel_superseded:
        superseded = runs_supersede(run=run)
        if superseded:
            message += "; cancelled " + ", ".join(f"#{old.number}" for old in superseded)
    return DeliveryOutcome(status=202, message=message, run=run)


def _log(delivery: Delivery, outcome: DeliveryOutcome) -> None:
    logger.info(
        "%s delivery %s (%s): %s",
        delivery.forge,
        delivery.delivery_id,
        delivery.event,
        outcome.message,
    )


def _first_outcome(forge: str, delivery_id: str) -> DeliveryOutcome:
    deadline = time.monotonic() + FIRST_OUTCOME_WAIT_SECONDS
    while True:
        with transaction.atomic():
            # Waits on the row lock the first copy holds while it acts.
            first = (
                Delivery.objects.select_for_update(of=("self",))
                .select_related("run")
                .get(forge=forge, delivery_id=delivery_id)
            )
            if first.acted_at is not None or time.monotonic() > deadline:
                return _outcome_of(first)
        # The first copy has stored but not yet locked it to act: give it a moment.
        time.sleep(0.02)


def _outcome_of(delivery: Delivery) -> DeliveryOutcome:
    if delivery.acted_at is None:
        return DeliveryOutcome(status=202, message="accepted: being processed", run=None)
    return DeliveryOutcome(
        status=delivery.status_code or 202, message=delivery.outcome, run=delivery.run
    )


def _stored_event(delivery: Delivery) -> ForgeEvent:
    reader = READERS[Forge(delivery.forge)]
    content_type = delivery.headers.get("Content-Type", "application/json").split(";")[0]
    payload = _parse_payload(bytes(delivery.body), content_type, form_allowed=True)
    try:
        return reader.event(delivery.event, payload)
    except PayloadError as error:
        return Ignored(f"malformed body: {error}")


def _required_header(headers: Mapping[str, str], names: tuple[str, ...], *, max_length: int) -> str:
    for name in names:
        if value := headers.get(name):
            if len(value) > max_length:
                raise WebhookRejected(
                    400, f"header {name} is {len(value)} characters long; at most {max_length}"
                )
            return value
    raise WebhookRejected(400, f"missing header {' or '.join(names)}")


def _parse_payload(body: bytes, content_type: str, *, form_allowed: bool) -> dict[str, Any]:
    if content_type == "application/json":
        raw = body
    elif content_type == "application/x-www-form-urlencoded" and form_allowed:
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
    # PostgreSQL text and jsonb cannot hold NUL; no forge sends one, so it is refused whole.
    if b"\x00" in raw or b"\\u0000" in raw.lower():
        raise WebhookRejected(400, "malformed body: it contains NUL characters")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRejected(400, f"malformed body: not JSON ({error})") from None
    except RecursionError:
        # Thousands of nested brackets: no forge sends that, and the parser gives up on it.
        raise WebhookRejected(400, "malformed body: the JSON is nested too deeply") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "malformed body: the JSON is not an object")
    return payload


def _storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in SECRET_HEADERS}
