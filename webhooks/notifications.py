"""Notifications to chat when runs and deployments finish (Slack/Mattermost-compatible JSON)."""

from typing import Any

from django.conf import settings
from django.urls import reverse

from infrastructure import dispatch
from infrastructure.outgoing_webhooks import notification_post
from pipelines.models import PipelineRun
from pipelines.states import RUN_FINAL_STATES
from releases.models import Deployment
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentKind, WatchState
from webhooks.models import NotificationEndpoint

RUN_ICONS = {"succeeded": "✅", "failed": "❌", "cancelled": "⏹"}


def notifications_for_run(*, run_id: int) -> int:
    """Queue one notification per endpoint that wants to hear of this finished run."""
    run = PipelineRun.objects.select_related("project").get(pk=run_id)
    if run.status not in RUN_FINAL_STATES:
        return 0
    link = settings.PUBLIC_URL + reverse("run-detail", args=[run.pk])
    what = f"{run.project.slug} #{run.number} {run.status}"
    if run.failed_stage:
        what += f" at {run.failed_stage}: {run.failure_reason}"
    text = f"{RUN_ICONS.get(run.status, '')} {what} — {run.ref} {run.commit_sha[:12]} — {link}"
    payload = _payload(
        text,
        event="run.finished",
        project=run.project.slug,
        run=run.number,
        status=run.status,
        commit=run.commit_sha,
        ref=run.ref,
        url=link,
    )
    return _queue(NotificationEndpoint.objects.filter(project=run.project, on_runs=True), payload)


def notifications_for_deployment(*, deployment_id: int) -> int:
    """Queue one notification per endpoint that wants to hear of this finished deployment."""
    deployment = Deployment.objects.select_related(
        "environment__project", "release", "previous_release", "requested_by"
    ).get(pk=deployment_id)
    if deployment.status not in DEPLOYMENT_FINAL_STATES:
        return 0
    environment = deployment.environment
    project = environment.project
    link = settings.PUBLIC_URL + reverse(
        "environment-detail", args=[project.slug, environment.name]
    )
    who = deployment.requested_by.get_username() if deployment.requested_by else "dockyard"
    previous = deployment.previous_release
    event = (
        "rollback.finished" if deployment.kind == DeploymentKind.ROLLBACK else "deployment.finished"
    )
    if deployment.watch_state == WatchState.ROLLED_BACK:
        # Told once more, after it succeeded: its watch saw it fail and took it back.
        event = "deployment.watch_rolled_back"
        text = (
            f"⚠️ {project.slug} {environment.name}: release {deployment.release.number} is "
            f"being rolled back by its watch: {deployment.watch_detail}"
            + (f"; back to release {previous.number}" if previous else "")
            + f"; auto-deploys to {environment.name} are paused until someone deploys — {link}"
        )
    elif deployment.status == "succeeded":
        number = deployment.release.number
        operated: dict[str, str] = {
            DeploymentKind.RESTART: f"🔄 {project.slug} {environment.name} restarted (release "
            f"{number})",
            DeploymentKind.STOP: f"⏹ {project.slug} {environment.name} stopped (release {number})",
            DeploymentKind.START: f"▶️ {project.slug} {environment.name} started (release {number})",
            DeploymentKind.SCALE: f"↔️ {project.slug} {environment.name} scaled to "
            f"{deployment.replicas} per host (release {number})",
        }
        if deployment.kind in operated:
            text = f"{operated[deployment.kind]} by {who} — {link}"
        else:
            verb = "rolled back" if deployment.kind == DeploymentKind.ROLLBACK else "deployed"
            icon = "↩️" if deployment.kind == DeploymentKind.ROLLBACK else "🚀"
            text = (
                f"{icon} {project.slug} {environment.name} {verb} to release {number}"
                + (f" (from {previous.number})" if previous else "")
                + f" by {who} — {link}"
            )
    else:
        text = (
            f"❌ {deployment.kind} of {project.slug} release {deployment.release.number} to "
            f"{environment.name} failed: {deployment.failure_reason} — {link}"
        )
    payload = _payload(
        text,
        event=event,
        project=project.slug,
        environment=environment.name,
        release=deployment.release.number,
        previous_release=previous.number if previous else None,
        status=deployment.status,
        requested_by=who,
        url=link,
    )
    return _queue(
        NotificationEndpoint.objects.filter(project=project, on_deployments=True), payload
    )


def notification_send(*, endpoint_id: int, payload: dict[str, Any]) -> None:
    """Send one notification; OutgoingWebhookError when the endpoint does not take it."""
    endpoint = NotificationEndpoint.objects.filter(pk=endpoint_id, active=True).first()
    if endpoint is not None:
        notification_post(url=endpoint.url, payload=payload)


def _payload(text: str, **event: Any) -> dict[str, Any]:
    # "text" is what Slack and Mattermost show; the structured event is for everyone else.
    return {"text": text, "username": "Dockyard", "dockyard": event}


def _queue(endpoints: Any, payload: dict[str, Any]) -> int:
    count = 0
    for endpoint_id in endpoints.filter(active=True).values_list("pk", flat=True):
        # One task per endpoint: a failing endpoint is retried alone, the others are not held up.
        dispatch.queue_notification(endpoint_id=endpoint_id, payload=payload)
        count += 1
    return count
