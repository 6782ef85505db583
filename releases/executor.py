"""Carrying a deployment through its steps: make sure the image is there, start the new slot,
check its health, switch the proxy to it, drain and stop the old one (kept for rollback).

A deployment is a durable job (infrastructure.durable_jobs): a worker lost mid-way is replaced
and the next one resumes at the step it was in, each step being safe to repeat. The engines,
the proxy and the health probe are passed in (releases.tools).
"""

import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infrastructure import dispatch
from infrastructure.docker_engine import ContainerEngine, DockerEngineError
from infrastructure.durable_jobs import (
    Take,
    job_enqueue,
    job_heartbeat,
    job_out_of_attempts,
    job_take,
)
from infrastructure.haproxy import ProxyError
from projects.selectors import project_secrets
from releases.models import Deployment, DeploymentEvent, Environment
from releases.proxy import proxy_apply, proxy_backends, proxy_servers_align
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
    Slot,
    check_deployment_transition,
    other_slot,
)
from releases.tools import DeployTools

logger = logging.getLogger(__name__)


CONTAINER_LOG_LINES = 40


class _DeploymentFailed(Exception):
    def __init__(self, reason: str, container_log: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.container_log = container_log


def deployment_enqueue(deployment: Deployment) -> None:
    """Send the deployment's task once the transaction commits (a durable job: its id and
    when it went are noted, so a lost message is found and sent again)."""
    deployment_id = deployment.pk
    job_enqueue(
        deployment,
        send=lambda task_id: dispatch.queue_deployment(
            deployment_id=deployment_id, task_id=task_id
        ),
    )


def deployment_execute(
    *, deployment_id: int, task_id: str = "", tools: DeployTools
) -> Deployment | None:
    """Carry a deployment through its steps; resumes where a lost worker left it.

    Returns None when there is nothing for this delivery to do: the deployment is over, or
    another live worker carries it.
    """
    deployment = _deployment_claim(deployment_id, task_id or str(uuid.uuid4()))
    if deployment is None:
        return None
    if job_out_of_attempts(deployment):
        return deployment_abandon(
            deployment=deployment,
            reason=f"its worker was lost {deployment.attempts - 1} times; not trying again",
            tools=tools,
        )
    with job_heartbeat(deployment):
        return _deployment_steps(deployment, tools)


def _deployment_claim(deployment_id: int, task_id: str) -> Deployment | None:
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment", "release", "environment__project")
            .filter(pk=deployment_id)
            .first()
        )
        if deployment is None or deployment.status in DEPLOYMENT_FINAL_STATES:
            return None
        if job_take(deployment, task_id=task_id) == Take.DUPLICATE:
            logger.info("deployment %s is carried by another worker; duplicate", deployment.pk)
            return None
    return deployment


def deployment_abandon(*, deployment: Deployment, reason: str, tools: DeployTools) -> Deployment:
    """End a deployment whose worker is gone for good, leaving the proxy as the database says.

    Before the switch the old slot still serves: the deployment fails and its new container
    goes. Once the database names the new slot live, the new version serves: it succeeded.
    """
    environment = Environment.objects.get(pk=deployment.environment_id)
    switched = (
        bool(deployment.slot)
        and environment.live_slot == deployment.slot
        and environment.current_release_id == deployment.release_id
    )
    if switched:
        if deployment.status == DeploymentStatus.SWITCHING:
            do_deployment_transition(
                deployment=deployment,
                to=DeploymentStatus.DRAINING,
                detail=f"traffic to {deployment.slot}",
            )
        do_deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.SUCCEEDED,
            detail=f"switched to {deployment.slot}; {reason} (the old slot was not drained)",
        )
    else:
        Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason)
        do_deployment_transition(deployment=deployment, to=DeploymentStatus.FAILED, detail=reason)
        engine_url = environment.docker_host or settings.DOCKER_HOST
        try:
            with tools.engines(engine_url) as engine:
                if deployment.reused_container and deployment.container_id:
                    # A rollback restarted a kept container (labelled by the deployment that
                    # made it): stopped again, it is kept as it was, for the next rollback.
                    engine.stop_container(deployment.container_id, timeout=5)
                engine.remove_containers(labels={"dockyard.deployment": str(deployment.pk)})
        except DockerEngineError as error:
            logger.error("could not clear away deployment %s's container: %s", deployment.pk, error)
    try:
        # The lost worker may have stopped between two runtime commands of the switch.
        proxy = tools.proxy()
        proxy_apply(proxy)
        proxy_servers_align(proxy)
    except ProxyError as error:
        logger.error("could not re-apply the proxy after deployment %s: %s", deployment.pk, error)
    return deployment


def _deployment_steps(deployment: Deployment, tools: DeployTools) -> Deployment:
    steps: dict[str, Callable[[Deployment, ContainerEngine, DeployTools], None]] = {
        DeploymentStatus.QUEUED: _step_queued,
        DeploymentStatus.PREPARING: _step_prepare,
        DeploymentStatus.STARTING: _step_start,
        DeploymentStatus.CHECKING: _step_check,
        DeploymentStatus.SWITCHING: _step_switch,
        DeploymentStatus.DRAINING: _step_drain,
    }
    engine_url = deployment.environment.docker_host or settings.DOCKER_HOST
    try:
        with tools.engines(engine_url) as engine:
            while deployment.status not in DEPLOYMENT_FINAL_STATES:
                try:
                    steps[deployment.status](deployment, engine, tools)
                except (DockerEngineError, ProxyError) as error:
                    raise _DeploymentFailed(str(error)) from None
    except _DeploymentFailed as failure:
        if deployment.status != DeploymentStatus.DRAINING:
            deployment.container_log = failure.container_log
            Deployment.objects.filter(pk=deployment.pk).update(
                failure_reason=failure.reason, container_log=failure.container_log
            )
            do_deployment_transition(
                deployment=deployment, to=DeploymentStatus.FAILED, detail=failure.reason
            )
        else:
            # Traffic has moved: the new version serves. What is left is housekeeping.
            logger.error("deployment %s: %s after the switch", deployment.pk, failure.reason)
            do_deployment_transition(
                deployment=deployment,
                to=DeploymentStatus.SUCCEEDED,
                detail=f"switched; the old slot was not cleaned up: {failure.reason}",
            )
    except DockerEngineError as error:
        do_deployment_transition(
            deployment=deployment, to=DeploymentStatus.FAILED, detail=str(error)
        )
    return deployment


def do_deployment_transition(*, deployment: Deployment, to: str, detail: str = "") -> Deployment:
    """Move a deployment to its next step under a row lock; the move is recorded, and when it
    ends the deployment its chat notifications are queued (on commit)."""
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        check_deployment_transition(locked.status, to)
        DeploymentEvent.objects.create(
            deployment=locked, from_status=locked.status, to_status=to, detail=detail[:10_000]
        )
        locked.status = to
        if to in DEPLOYMENT_FINAL_STATES:
            locked.finished_at = timezone.now()
            dispatch.queue_deployment_notifications(deployment_id=locked.pk)
        locked.save(update_fields=["status", "finished_at"])
    deployment.status, deployment.finished_at = locked.status, locked.finished_at
    return deployment


def _step_queued(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    # The proxy must be up before anything moves: it is also what keeps the old version
    # serving while the new one starts.
    proxy_apply(tools.proxy())
    do_deployment_transition(deployment=deployment, to=DeploymentStatus.PREPARING)


def _step_prepare(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    environment = deployment.environment
    slot = other_slot(environment.live_slot) if environment.live_slot else Slot.BLUE
    kept = _kept_container(deployment, slot, engine)
    detail = f"slot {slot}"
    if kept:
        detail += f", restarting the kept container {kept[:12]}"
    else:
        image_id = engine.ensure_image(reference=deployment.release.image, on_output=lambda _: None)
        detail += f", image {deployment.release.image} ({image_id[:19]})"
    Deployment.objects.filter(pk=deployment.pk).update(
        slot=slot, container_id=kept, reused_container=bool(kept)
    )
    deployment.slot, deployment.container_id, deployment.reused_container = slot, kept, bool(kept)
    do_deployment_transition(deployment=deployment, to=DeploymentStatus.STARTING, detail=detail)


def _step_start(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    environment = deployment.environment
    if deployment.reused_container:
        engine.start_container(deployment.container_id)
    else:
        port = environment.slot_port(deployment.slot)
        secrets = project_secrets(environment.project, environment.secret_names)
        # A worker lost in this step may have left its container (same name) behind.
        engine.remove_containers(labels={"dockyard.deployment": str(deployment.pk)})
        container_id = engine.start_service(
            image=deployment.release.image,
            name=(
                f"dockyard-{environment.project.slug}-{environment.name}-{deployment.slot}"
                f"-r{deployment.release.number}"
            ),
            # The app listens where the slot says: host networking leaves no port mapping.
            environment={
                **deployment.variables,
                **secrets,
                "PORT": str(port),
                "HOST": environment.address,
            },
            labels={
                "dockyard.project": environment.project.slug,
                "dockyard.environment": environment.name,
                "dockyard.slot": deployment.slot,
                "dockyard.release": str(deployment.release.number),
                "dockyard.deployment": str(deployment.pk),
            },
        )
        Deployment.objects.filter(pk=deployment.pk).update(container_id=container_id)
        deployment.container_id = container_id
    do_deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.CHECKING,
        detail=f"container {deployment.container_id[:12]} on {environment.address}:"
        f"{environment.slot_port(deployment.slot)}",
    )


def _step_check(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    environment = deployment.environment
    port = environment.slot_port(deployment.slot)
    deadline = time.monotonic() + environment.health_timeout_seconds
    last = "no answer yet"
    while True:
        result = tools.probe(
            address=environment.address,
            port=port,
            path=environment.health_path,
            host=environment.health_host,
        )
        if result.healthy:
            do_deployment_transition(
                deployment=deployment, to=DeploymentStatus.SWITCHING, detail=result.detail
            )
            return
        last = result.detail
        state = engine.container_state(deployment.container_id)
        if state != "running" or time.monotonic() > deadline:
            why = (
                f"the container {state or 'vanished'}"
                if state != "running"
                else f"not healthy within {environment.health_timeout_seconds}s"
            )
            log = engine.container_logs(deployment.container_id, tail=CONTAINER_LOG_LINES)
            # The broken container never took traffic; it goes, the old slot keeps serving.
            engine.remove_container(deployment.container_id)
            raise _DeploymentFailed(f"health check failed: {why} ({last})", log)
        time.sleep(environment.health_interval_ms / 1000)


def _step_switch(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    environment = Environment.objects.get(pk=deployment.environment_id)
    backend, new, old = environment.proxy_backend, deployment.slot, environment.live_slot
    haproxy = tools.proxy()
    haproxy.set_server(
        backend, new, address=environment.address, port=environment.slot_port(new), state="ready"
    )
    if old and old != new:
        haproxy.set_server(backend, old, state="drain")
    Environment.objects.filter(pk=environment.pk).update(
        live_slot=new, current_release=deployment.release
    )
    haproxy.remember(proxy_backends())
    do_deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.DRAINING,
        detail=f"traffic to {new}" + (f"; {old} draining" if old and old != new else ""),
    )


def _step_drain(deployment: Deployment, engine: ContainerEngine, tools: DeployTools) -> None:
    environment = deployment.environment
    old = other_slot(deployment.slot)
    previous = (
        environment.deployments.filter(status=DeploymentStatus.SUCCEEDED, slot=old)
        .order_by("-finished_at", "-id")
        .first()
    )
    haproxy = tools.proxy()
    deadline = time.monotonic() + environment.drain_timeout_seconds
    while haproxy.sessions(environment.proxy_backend, old) > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    haproxy.set_server(environment.proxy_backend, old, state="maint")
    if previous is not None and previous.container_id:
        engine.stop_container(previous.container_id, timeout=5)
    _prune_kept_containers(environment, engine, live=deployment.container_id)
    do_deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.SUCCEEDED,
        detail=f"{old} drained and stopped, kept for rollback" if previous else "first release",
    )


def _kept_container(deployment: Deployment, slot: str, engine: ContainerEngine) -> str:
    """A stopped container of this very release in `slot`, if one was kept."""
    if deployment.kind != DeploymentKind.ROLLBACK:
        return ""
    earlier = deployment.environment.deployments.filter(
        release=deployment.release, slot=slot, status=DeploymentStatus.SUCCEEDED
    ).exclude(container_id="")
    for candidate in earlier.order_by("-finished_at", "-id"):
        if engine.container_state(candidate.container_id) in {"exited", "created"}:
            return candidate.container_id
    return ""


def _prune_kept_containers(environment: Environment, engine: ContainerEngine, *, live: str) -> None:
    """Keep the newest few stopped containers for rollbacks; remove the older ones."""
    succeeded = environment.deployments.filter(status=DeploymentStatus.SUCCEEDED).exclude(
        container_id=""
    )
    seen: list[str] = []
    for container_id in succeeded.order_by("-finished_at", "-id").values_list(
        "container_id", flat=True
    ):
        if container_id not in seen and container_id != live:
            seen.append(container_id)
    for container_id in seen[settings.DOCKYARD_KEEP_CONTAINERS :]:
        engine.remove_container(container_id)
