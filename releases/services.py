"""Writes for releases, environments and deployments, and the proxy they drive."""

import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import Actor, current_actor
from audit.models import AuditAction
from audit.services import audit_record
from infrastructure import dispatch
from infrastructure.docker_engine import DockerEngine, DockerEngineError
from infrastructure.durable_jobs import (
    Take,
    job_enqueue,
    job_heartbeat,
    job_out_of_attempts,
    job_take,
)
from infrastructure.haproxy import HAProxy, ProxyBackend, ProxyError, ProxyServer
from infrastructure.health_check import probe
from pipelines.models import PipelineRun, RunKind
from pipelines.states import RunStatus
from projects.models import Project
from projects.selectors import project_secrets
from projects.spec import DeploySpec, spec_from_dict
from projects.trigger_rules import name_matches, parse_globs
from releases.access import can_deploy_to
from releases.models import Deployment, DeploymentEvent, Environment, Release
from releases.selectors import rollback_target
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
    Slot,
    check_deployment_transition,
    other_slot,
)

logger = logging.getLogger(__name__)

CONTAINER_LOG_LINES = 40
DEPLOYMENT_AUDIT_ACTIONS = {
    DeploymentKind.DEPLOY: AuditAction.DEPLOY,
    DeploymentKind.AUTO: AuditAction.AUTO_DEPLOY,
    DeploymentKind.PROMOTE: AuditAction.PROMOTE,
    DeploymentKind.ROLLBACK: AuditAction.ROLLBACK,
}

User = AbstractBaseUser | AnonymousUser


class DeploymentRefused(Exception):
    """A deployment that may not happen now, and why (busy, not allowed, not yet tested)."""


class _DeploymentFailed(Exception):
    def __init__(self, reason: str, container_log: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.container_log = container_log


def proxy() -> HAProxy:
    return HAProxy(settings.DOCKYARD_PROXY_DIR)


def proxy_backends() -> list[ProxyBackend]:
    """Every environment as the proxy should serve it, from the database."""
    return [
        ProxyBackend(
            name=environment.proxy_backend,
            address=environment.address,
            frontend_port=environment.frontend_port,
            servers=tuple(
                ProxyServer(
                    name=slot,
                    address=environment.address,
                    port=environment.slot_port(slot),
                    enabled=environment.live_slot == slot,
                )
                for slot in Slot.values
            ),
        )
        for environment in Environment.objects.all()
    ]


def proxy_apply() -> None:
    """Start or reload the proxy so it serves every environment as the database says."""
    proxy().apply(proxy_backends())


def environments_sync(*, project: Project, deploy: DeploySpec) -> list[Environment]:
    """Create the environments dockyard.yml names that the project does not have yet.

    Existing environments are left as operators edited them. New ones get their ports and
    the proxy is reloaded to listen for them.
    """
    created = []
    with transaction.atomic():
        # Port allocation is global; one creator at a time.
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).get()
        existing = {
            environment.name: environment
            for environment in Environment.objects.filter(project=project)
        }
        for position, spec in enumerate(deploy.environments):
            if spec.name in existing:
                continue
            frontend, blue, green = _free_ports()
            branches = " ".join(spec.branches) or (project.default_branch if spec.auto else "")
            environment = Environment.objects.create(
                project=project,
                name=spec.name,
                position=position,
                docker_host=settings.DOCKER_HOST,
                frontend_port=frontend,
                blue_port=blue,
                green_port=green,
                health_path=deploy.health,
                auto_deploy_branches=branches if spec.auto else "",
            )
            existing[spec.name] = environment
            created.append(environment)
        for spec in deploy.environments:
            if (
                spec.after
                and existing[spec.name].after_id is None
                and existing[spec.name] in created
            ):
                Environment.objects.filter(pk=existing[spec.name].pk).update(
                    after=existing[spec.after]
                )
    if created:
        proxy_apply()
    return created


def release_from_run(*, run_id: int) -> Release | None:
    """Make the release of a passed, published run with a deploy section, and auto-deploy it.

    Idempotent: a run makes one release, whatever the number of calls.
    """
    run = PipelineRun.objects.select_related("project").get(pk=run_id)
    if run.status != RunStatus.SUCCEEDED or run.kind == RunKind.PULL_REQUEST:
        return None
    if not run.image_digest or run.spec is None:
        return None
    deploy = spec_from_dict(run.spec).deploy
    if deploy is None:
        return None
    environments_sync(project=run.project, deploy=deploy)
    release = _release_create(run)
    for environment in Environment.objects.filter(project=run.project):
        globs = parse_globs(environment.auto_deploy_branches)
        if run.branch and globs and name_matches(run.branch, globs):
            try:
                deployment_request(
                    environment=environment, release=release, kind=DeploymentKind.AUTO
                )
            except DeploymentRefused as refusal:
                # Busy, or not yet through `after`: an auto-deploy is a wish, not an order.
                logger.info("no auto-deploy of %s to %s: %s", release, environment, refusal)
    return release


def deployment_request(
    *,
    environment: Environment,
    release: Release,
    kind: str = DeploymentKind.DEPLOY,
    user: User | None = None,
    variables: dict[str, str] | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Queue a deployment of `release` to `environment`, or say why not.

    Refused when the user may not deploy there, when the release has not succeeded in the
    environment it must pass first (`after`), or while another deployment of the environment
    runs (a database constraint decides). The request is audited as `actor`'s (by default
    whoever the context names, with `user`).
    """
    # Fresh from the database: the caller's copy may predate the last deployment.
    environment = Environment.objects.select_related("project", "after").get(pk=environment.pk)
    if release.project_id != environment.project_id:
        raise DeploymentRefused(f"{release} is not a release of {environment.project.slug}")
    if user is not None and not can_deploy_to(user, environment):
        raise DeploymentRefused(f"{user} may not deploy to {environment.name}")
    if environment.after is not None and not _succeeded_in(release, environment.after):
        raise DeploymentRefused(
            f"release {release.number} has not succeeded in {environment.after.name}; "
            f"deploy it there first"
        )
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                environment=environment,
                release=release,
                previous_release=environment.current_release,
                kind=kind,
                requested_by=user if isinstance(user, get_user_model()) else None,
                variables=dict(environment.variables) if variables is None else variables,
            )
            who = user.get_username() if user is not None and user.is_authenticated else "dockyard"
            DeploymentEvent.objects.create(
                deployment=deployment,
                from_status="",
                to_status=DeploymentStatus.QUEUED,
                detail=f"{kind} of release {release.number} requested by {who}",
            )
            previous = deployment.previous_release
            audit_record(
                action=DEPLOYMENT_AUDIT_ACTIONS[DeploymentKind(kind)],
                target=environment,
                actor=actor if actor is not None else current_actor(user),
                detail={
                    "deployment": deployment.pk,
                    "release": release.number,
                    "previous_release": previous.number if previous else None,
                    "image": release.image,
                },
            )
            deployment_enqueue(deployment)
    except IntegrityError:
        busy = environment.deployments.exclude(status__in=DEPLOYMENT_FINAL_STATES).first()
        detail = f" with deployment {busy.pk} of release {busy.release.number}" if busy else ""
        raise DeploymentRefused(
            f"{environment.name} is busy{detail}; try again when it has finished"
        ) from None
    return deployment


def environment_promote(
    *,
    environment: Environment,
    release: Release | None = None,
    user: User | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Promote a release here: by default the one serving in the environment before this one."""
    environment = Environment.objects.select_related("after").get(pk=environment.pk)
    if release is None:
        if environment.after is None:
            raise DeploymentRefused(
                f"{environment.name} comes after no environment: name the release to deploy"
            )
        release = environment.after.current_release
        if release is None:
            raise DeploymentRefused(f"nothing serves in {environment.after.name} to promote")
    return deployment_request(
        environment=environment,
        release=release,
        kind=DeploymentKind.PROMOTE,
        user=user,
        actor=actor,
    )


def environment_rollback(
    *, environment: Environment, user: User | None = None, actor: Actor | None = None
) -> Deployment:
    """Deploy the environment's previous good release again, with the settings it ran with."""
    # Fresh from the database: the caller's copy may predate the last deployment.
    environment = Environment.objects.get(pk=environment.pk)
    previous = rollback_target(environment)
    if previous is None:
        raise DeploymentRefused(f"{environment.name} has no earlier good release to roll back to")
    return deployment_request(
        environment=environment,
        release=previous.release,
        kind=DeploymentKind.ROLLBACK,
        user=user,
        variables=previous.variables,
        actor=actor,
    )


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


def deployment_execute(*, deployment_id: int, task_id: str = "") -> Deployment | None:
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
        )
    with job_heartbeat(deployment):
        return _deployment_steps(deployment)


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


def deployment_abandon(*, deployment: Deployment, reason: str) -> Deployment:
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
            deployment_transition(
                deployment=deployment,
                to=DeploymentStatus.DRAINING,
                detail=f"traffic to {deployment.slot}",
            )
        deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.SUCCEEDED,
            detail=f"switched to {deployment.slot}; {reason} (the old slot was not drained)",
        )
    else:
        Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason)
        deployment_transition(deployment=deployment, to=DeploymentStatus.FAILED, detail=reason)
        engine_url = environment.docker_host or settings.DOCKER_HOST
        try:
            with DockerEngine(engine_url) as engine:
                if deployment.reused_container and deployment.container_id:
                    # A rollback restarted a kept container (labelled by the deployment that
                    # made it): stopped again, it is kept as it was, for the next rollback.
                    engine.stop_container(deployment.container_id, timeout=5)
                engine.remove_containers(labels={"dockyard.deployment": str(deployment.pk)})
        except DockerEngineError as error:
            logger.error("could not clear away deployment %s's container: %s", deployment.pk, error)
    try:
        # The lost worker may have stopped between two runtime commands of the switch.
        proxy_apply()
        proxy_servers_align()
    except ProxyError as error:
        logger.error("could not re-apply the proxy after deployment %s: %s", deployment.pk, error)
    return deployment


def proxy_servers_align() -> None:
    """Put each environment's servers in the state the database says, unless a deployment
    is moving them: the live slot ready, the other in maintenance (HAProxy restarted from an
    older file, or someone used its runtime API by hand)."""
    haproxy = proxy()
    busy = set(
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES).values_list(
            "environment_id", flat=True
        )
    )
    states = haproxy.server_states()
    for environment in Environment.objects.exclude(live_slot="").exclude(pk__in=busy):
        for slot in Slot.values:
            wanted = "ready" if slot == environment.live_slot else "maint"
            current = states.get((environment.proxy_backend, slot))
            if current is not None and current != wanted:
                logger.warning(
                    "proxy: %s/%s was %s, the database says %s; restoring",
                    environment.proxy_backend,
                    slot,
                    current,
                    wanted,
                )
                haproxy.set_server(
                    environment.proxy_backend,
                    slot,
                    address=environment.address,
                    port=environment.slot_port(slot),
                    state=wanted,
                )


def _deployment_steps(deployment: Deployment) -> Deployment:
    steps: dict[str, Callable[[Deployment, DockerEngine], None]] = {
        DeploymentStatus.QUEUED: _step_queued,
        DeploymentStatus.PREPARING: _step_prepare,
        DeploymentStatus.STARTING: _step_start,
        DeploymentStatus.CHECKING: _step_check,
        DeploymentStatus.SWITCHING: _step_switch,
        DeploymentStatus.DRAINING: _step_drain,
    }
    engine_url = deployment.environment.docker_host or settings.DOCKER_HOST
    try:
        with DockerEngine(engine_url) as engine:
            while deployment.status not in DEPLOYMENT_FINAL_STATES:
                try:
                    steps[deployment.status](deployment, engine)
                except (DockerEngineError, ProxyError) as error:
                    raise _DeploymentFailed(str(error)) from None
    except _DeploymentFailed as failure:
        if deployment.status != DeploymentStatus.DRAINING:
            deployment.container_log = failure.container_log
            Deployment.objects.filter(pk=deployment.pk).update(
                failure_reason=failure.reason, container_log=failure.container_log
            )
            deployment_transition(
                deployment=deployment, to=DeploymentStatus.FAILED, detail=failure.reason
            )
        else:
            # Traffic has moved: the new version serves. What is left is housekeeping.
            logger.error("deployment %s: %s after the switch", deployment.pk, failure.reason)
            deployment_transition(
                deployment=deployment,
                to=DeploymentStatus.SUCCEEDED,
                detail=f"switched; the old slot was not cleaned up: {failure.reason}",
            )
    except DockerEngineError as error:
        deployment_transition(deployment=deployment, to=DeploymentStatus.FAILED, detail=str(error))
    return deployment


def deployment_transition(*, deployment: Deployment, to: str, detail: str = "") -> Deployment:
    """Move a deployment to its next step under a row lock; the move is recorded."""
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


def proxy_reconcile() -> None:
    """Bring the proxy back to what the database says, if anything is deployed: started if
    it is down (killed, machine restarted), servers' states restored."""
    if not Environment.objects.exclude(live_slot="").exists():
        return
    proxy_apply()
    proxy_servers_align()


def _step_queued(deployment: Deployment, engine: DockerEngine) -> None:
    # The proxy must be up before anything moves: it is also what keeps the old version
    # serving while the new one starts.
    proxy_apply()
    deployment_transition(deployment=deployment, to=DeploymentStatus.PREPARING)


def _step_prepare(deployment: Deployment, engine: DockerEngine) -> None:
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
    deployment_transition(deployment=deployment, to=DeploymentStatus.STARTING, detail=detail)


def _step_start(deployment: Deployment, engine: DockerEngine) -> None:
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
    deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.CHECKING,
        detail=f"container {deployment.container_id[:12]} on {environment.address}:"
        f"{environment.slot_port(deployment.slot)}",
    )


def _step_check(deployment: Deployment, engine: DockerEngine) -> None:
    environment = deployment.environment
    port = environment.slot_port(deployment.slot)
    deadline = time.monotonic() + environment.health_timeout_seconds
    last = "no answer yet"
    while True:
        result = probe(
            address=environment.address,
            port=port,
            path=environment.health_path,
            host=environment.health_host,
        )
        if result.healthy:
            deployment_transition(
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


def _step_switch(deployment: Deployment, engine: DockerEngine) -> None:
    environment = Environment.objects.get(pk=deployment.environment_id)
    backend, new, old = environment.proxy_backend, deployment.slot, environment.live_slot
    haproxy = proxy()
    haproxy.set_server(
        backend, new, address=environment.address, port=environment.slot_port(new), state="ready"
    )
    if old and old != new:
        haproxy.set_server(backend, old, state="drain")
    Environment.objects.filter(pk=environment.pk).update(
        live_slot=new, current_release=deployment.release
    )
    haproxy.remember(proxy_backends())
    deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.DRAINING,
        detail=f"traffic to {new}" + (f"; {old} draining" if old and old != new else ""),
    )


def _step_drain(deployment: Deployment, engine: DockerEngine) -> None:
    environment = deployment.environment
    old = other_slot(deployment.slot)
    previous = (
        environment.deployments.filter(status=DeploymentStatus.SUCCEEDED, slot=old)
        .order_by("-finished_at", "-id")
        .first()
    )
    haproxy = proxy()
    deadline = time.monotonic() + environment.drain_timeout_seconds
    while haproxy.sessions(environment.proxy_backend, old) > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    haproxy.set_server(environment.proxy_backend, old, state="maint")
    if previous is not None and previous.container_id:
        engine.stop_container(previous.container_id, timeout=5)
    _prune_kept_containers(environment, engine, live=deployment.container_id)
    deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.SUCCEEDED,
        detail=f"{old} drained and stopped, kept for rollback" if previous else "first release",
    )


def _kept_container(deployment: Deployment, slot: str, engine: DockerEngine) -> str:
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


def _prune_kept_containers(environment: Environment, engine: DockerEngine, *, live: str) -> None:
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


def _succeeded_in(release: Release, environment: Environment) -> bool:
    return environment.deployments.filter(
        release=release, status=DeploymentStatus.SUCCEEDED
    ).exists()


def _release_create(run: PipelineRun) -> Release:
    existing = Release.objects.filter(run=run).first()
    if existing is not None:
        return existing
    assert run.spec is not None
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=run.project_id).get()
        last = Release.objects.filter(project=run.project).aggregate(last=Max("number"))["last"]
        return Release.objects.create(
            project=run.project,
            number=(last or 0) + 1,
            run=run,
            commit_sha=run.commit_sha,
            image=f"{run.image_repository}@{run.image_digest}",
            deploy_config=run.spec.get("deploy") or {},
        )


def _free_ports() -> tuple[int, int, int]:
    used: set[int] = set()
    for ports in Environment.objects.values_list("frontend_port", "blue_port", "green_port"):
        used.update(ports)
    frontend = next((p for p in settings.DOCKYARD_FRONTEND_PORTS if p not in used), None)
    slots = [p for p in settings.DOCKYARD_SLOT_PORTS if p not in used][:2]
    if frontend is None or len(slots) < 2:
        raise DeploymentRefused(
            "no free ports left for a new environment: widen DOCKYARD_FRONTEND_PORTS or "
            "DOCKYARD_SLOT_PORTS"
        )
    return frontend, slots[0], slots[1]
