"""A release that watches itself: after a deployment succeeded, its release's 5xx rate through
the hosts' HAProxy (releases.traffic's samples) is watched for the window dockyard.yml sets
(`deploy.watch`). Over the limit, with enough requests to judge, the release that served before
comes back by itself, the numbers are recorded, chat is told, and pushes stop deploying to the
environment until a person deploys or promotes again."""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.actors import SYSTEM
from audit.models import AuditAction
from audit.services import audit_record
from infrastructure import dispatch
from projects.spec import WatchSpec, watch_of_environment
from releases.models import Deployment, Environment
from releases.states import DeploymentKind, WatchState
from releases.traffic_figures import Figures
from releases.traffic_selectors import deployment_figures

logger = logging.getLogger(__name__)

# Kinds whose release is new to the environment, and so watched (a rollback goes back to one
# that served; a restart, start or stop keeps the one that serves).
WATCHED_KINDS = frozenset({DeploymentKind.DEPLOY, DeploymentKind.AUTO, DeploymentKind.PROMOTE})


def watch_begins(deployment: Deployment) -> bool:
    """Start the watch of a deployment that just succeeded, when its release's deploy section
    asks for one here: sets its watch fields (the caller saves them, holding its row lock)."""
    if deployment.kind not in WATCHED_KINDS or deployment.previous_release_id is None:
        return False
    environment_name = Environment.objects.values_list("name", flat=True).get(
        pk=deployment.environment_id
    )
    spec = watch_of_environment(deployment.release.deploy_config or {}, environment_name)
    if spec is None:
        return False
    deployment.watch_state = WatchState.WATCHING
    deployment.watch_until = timezone.now() + timedelta(seconds=spec.seconds)
    return True


def watch_verdict(figures: Figures, spec: WatchSpec) -> str:
    """Why the release must go back ("" when it may stay). Pure."""
    if figures.requests < spec.min_requests:
        return ""
    if figures.error_rate <= spec.max_error_rate:
        return ""
    return (
        f"{figures.responses_5xx} of {figures.requests} requests answered 5xx "
        f"({figures.error_rate:.1%}, more than the {spec.max_error_rate:.1%} allowed)"
    )


def watches_judge(*, now: datetime | None = None) -> list[str]:
    """Judge every deployment being watched on the traffic sampled so far: roll back the ones
    over their limit, end the ones whose window passed. What was done, one line each."""
    now = now or timezone.now()
    done = []
    watching = Deployment.objects.filter(watch_state=WatchState.WATCHING).select_related(
        "environment", "release", "previous_release"
    )
    for deployment in watching:
        spec = watch_of_environment(
            deployment.release.deploy_config or {}, deployment.environment.name
        )
        figures = deployment_figures(deployment)
        verdict = watch_verdict(figures, spec) if spec is not None else ""
        if verdict:
            done.append(_watch_roll_back(deployment, verdict))
        elif spec is None or deployment.watch_until is None or now >= deployment.watch_until:
            detail = f"{figures.responses_5xx} of {figures.requests} requests answered 5xx" + (
                f" (fewer than the {spec.min_requests} needed to judge)"
                if spec is not None and figures.requests < spec.min_requests
                else ""
            )
            if _watch_end(deployment, WatchState.PASSED, detail):
                done.append(f"deployment {deployment.pk}: passed its watch: {detail}")
    return done


def watches_supersede(environment: Environment, *, by: Deployment) -> None:
    """Another deployment of the environment began: the watches still running there end
    (call inside the transaction that creates `by`)."""
    Deployment.objects.filter(environment=environment, watch_state=WatchState.WATCHING).exclude(
        pk=by.pk
    ).update(
        watch_state=WatchState.SUPERSEDED,
        watch_detail=f"deployment {by.pk} ({by.kind} of release {by.release.number}) began",
    )


def _watch_end(deployment: Deployment, state: str, detail: str) -> bool:
    """Move the watch from watching to `state`; False when something else ended it first."""
    return bool(
        Deployment.objects.filter(pk=deployment.pk, watch_state=WatchState.WATCHING).update(
            watch_state=state, watch_detail=detail[:10_000]
        )
    )


def _watch_roll_back(deployment: Deployment, verdict: str) -> str:
    # Imported here: services imports this module (a new deployment supersedes a watch).
    from releases.services import DeploymentRefused, environment_rollback

    environment = deployment.environment
    previous = deployment.previous_release
    assert previous is not None, "only deployments with a release before them are watched"
    reason = (
        f"the watch of deployment {deployment.pk} saw release {deployment.release.number}: "
        f"{verdict}"
    )
    with transaction.atomic():
        if not _watch_end(deployment, WatchState.ROLLED_BACK, verdict):
            return f"deployment {deployment.pk}: its watch ended meanwhile"
        Environment.objects.filter(pk=environment.pk).update(
            auto_deploy_paused=f"{reason}; rolled back to release {previous.number}"
        )
        audit_record(
            action=AuditAction.WATCH_ROLLBACK,
            target=environment,
            actor=SYSTEM,
            detail={
                "deployment": deployment.pk,
                "release": deployment.release.number,
                "rolled_back_to": previous.number,
                "verdict": verdict,
            },
        )
        dispatch.queue_deployment_notifications(deployment_id=deployment.pk)
    try:
        rollback = environment_rollback(
            environment=environment, release=previous, actor=SYSTEM, reason=reason
        )
    except DeploymentRefused as refusal:
        logger.error("%s, but it could not roll back: %s", reason, refusal)
        Deployment.objects.filter(pk=deployment.pk).update(
            watch_detail=f"{verdict}; the rollback was refused: {refusal}"[:10_000]
        )
        return f"deployment {deployment.pk}: {verdict}; the rollback was refused: {refusal}"
    logger.warning("%s; rolling back (deployment %s)", reason, rollback.pk)
    return f"deployment {deployment.pk}: {verdict}; rolling back in deployment {rollback.pk}"
