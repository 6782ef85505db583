"""Carrying a deployment out on every host of its environment (the machines are in
releases.states).

Two kinds of durable job (infrastructure.durable_jobs) do it. The deployment itself (the
coordinator) prepares every host, runs the release command, and at the end finishes or
reverts; in between, each host's part is a job of its own (HostDeployment) that any deploy
worker may carry: start the release in the idle slot, have the host's HAProxy check it, switch,
drain. Hosts go in batches, carried by the coordinator's own worker side by side
(`_batches_carry`); if that worker is lost, the hosts' jobs go to other workers through the
broker, and when one ends `deployment_advance` starts the next batch, or hands back to the
coordinator. A worker lost mid-way is replaced and the next one resumes at
the step it was in, each step being safe to repeat. Engines and proxies are passed in
(releases.tools).
"""

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from infrastructure import dispatch
from infrastructure.docker_engine import ContainerEngine, ContainerLimits, DockerEngineError
from infrastructure.durable_jobs import (
    Take,
    job_enqueue,
    job_heartbeat,
    job_out_of_attempts,
    job_take,
)
from infrastructure.haproxy import ProxyError, TrafficProxy
from projects.secret_masking import mask_secrets
from projects.selectors import project_secrets
from projects.spec import DEFAULT_RELEASE_TIMEOUT
from releases.models import Deployment, DeploymentEvent, Environment, Host, HostDeployment
from releases.proxy import host_proxy, proxy_apply, proxy_backends, proxy_servers_settled
from releases.selectors import live_containers
from releases.sending import deployment_enqueue, host_deployment_enqueue
from releases.services import replica_ports_allocate
from releases.states import (
    DEPLOYMENT_CARRIED_STATES,
    DEPLOYMENT_FINAL_STATES,
    HOST_ACTIVE_STATES,
    HOST_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
    HostStatus,
    Slot,
    check_deployment_transition,
    check_host_transition,
    other_slot,
    slot_servers,
)
from releases.tools import DeployTools
from releases.watch import watch_begins

logger = logging.getLogger(__name__)

CONTAINER_LOG_LINES = 40
RELEASE_LOG_LIMIT = 100_000

Item = TypeVar("Item")
Result = TypeVar("Result")


class _HostFailed(Exception):
    def __init__(self, reason: str, container_log: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.container_log = container_log


# --- The coordinator -------------------------------------------------------------------------


def deployment_execute(
    *, deployment_id: int, task_id: str = "", tools: DeployTools
) -> Deployment | None:
    """Carry the deployment's own steps; resumes where a lost worker left it.

    Returns None when there is nothing for this delivery to do: the deployment is over, its
    hosts' jobs have the work, or another live worker carries it.
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
        return _coordinator_steps(deployment, tools)


def _deployment_claim(deployment_id: int, task_id: str) -> Deployment | None:
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment", "release", "environment__project")
            .filter(pk=deployment_id)
            .first()
        )
        if deployment is None or deployment.status not in DEPLOYMENT_CARRIED_STATES:
            return None
        if job_take(deployment, task_id=task_id) == Take.DUPLICATE:
            logger.info("deployment %s is carried by another worker; duplicate", deployment.pk)
            return None
    return deployment


def _coordinator_steps(deployment: Deployment, tools: DeployTools) -> Deployment:
    steps: dict[str, Callable[[Deployment, DeployTools], None]] = {
        DeploymentStatus.QUEUED: _step_queued,
        DeploymentStatus.PREPARING: _step_prepare,
        DeploymentStatus.RELEASING: _step_release,
        DeploymentStatus.REVERTING: _step_revert,
        DeploymentStatus.FINISHING: _step_finish,
        DeploymentStatus.STOPPING: _step_stop,
    }
    while deployment.status in steps:
        try:
            steps[deployment.status](deployment, tools)
        except (DockerEngineError, ProxyError, _HostFailed) as error:
            reason = error.reason if isinstance(error, _HostFailed) else str(error)
            if deployment.status == DeploymentStatus.FINISHING:
                # Every host serves the new release: what is left is housekeeping.
                logger.error("deployment %s finishing: %s", deployment.pk, reason)
                do_deployment_transition(
                    deployment=deployment,
                    to=DeploymentStatus.SUCCEEDED,
                    detail=f"every host switched; the old slots were not all stopped: {reason}",
                )
            else:
                deployment_fail(deployment=deployment, reason=reason)
    return deployment


def deployment_fail(*, deployment: Deployment, reason: str) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason[:10_000])
    deployment.failure_reason = reason
    do_deployment_transition(deployment=deployment, to=DeploymentStatus.FAILED, detail=reason)


def _step_queued(deployment: Deployment, tools: DeployTools) -> None:
    if deployment.kind == DeploymentKind.STOP:
        do_deployment_transition(deployment=deployment, to=DeploymentStatus.STOPPING)
    else:
        do_deployment_transition(deployment=deployment, to=DeploymentStatus.PREPARING)


def _step_prepare(deployment: Deployment, tools: DeployTools) -> None:
    """Every host's proxy up and serving as the database says, and what the release needs on
    every host (its image, or the kept container of a rollback): a host that cannot have them
    fails the deployment here, before anything changes."""
    environment = Environment.objects.get(pk=deployment.environment_id)
    proxy_servers_settled(environment)
    hosts = list(environment.hosts.order_by("name"))
    if not hosts:
        raise _HostFailed(f"{environment.name} has no hosts to deploy to")
    slot = other_slot(environment.live_slot) if environment.live_slot else Slot.BLUE
    replicas = environment.replicas or int(
        (deployment.release.deploy_config or {}).get("replicas") or 1
    )
    if replicas > 1:
        # Before the proxies are applied: their backends get a server per replica port.
        replica_ports_allocate(environment=environment, replicas=replicas)
    Deployment.objects.filter(pk=deployment.pk).update(slot=slot, replicas=replicas)
    deployment.slot, deployment.replicas = slot, replicas
    if deployment.kind == DeploymentKind.ROLLBACK:
        size = len(hosts)  # every host at once: a rollback is urgent
    elif deployment.kind == DeploymentKind.RESTART:
        size = 1  # host by host: the others serve meanwhile
    else:
        size = environment.batch_size(len(hosts))
    for position, host in enumerate(hosts):
        HostDeployment.objects.get_or_create(
            deployment=deployment,
            host=host,
            defaults={"position": position, "batch": position // size},
        )
    targets = list(deployment.host_deployments.select_related("host"))
    problems = [
        problem
        for problem in _on_each(targets, lambda target: _host_prepare(deployment, target, tools))
        if problem
    ]
    if problems:
        raise _HostFailed("; ".join(problems) + "; nothing was changed")
    command = (deployment.release.deploy_config or {}).get("release_command")
    if command and deployment.kind != DeploymentKind.ROLLBACK:
        do_deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.RELEASING,
            detail=f"every host ready ({', '.join(h.name for h in hosts)}), slot {slot}",
        )
    else:
        _rolling_start(deployment, f"every host ready, slot {slot}", tools)


def _host_prepare(deployment: Deployment, target: HostDeployment, tools: DeployTools) -> str:
    """ "" when `target`'s host is ready for the release, else what stops it."""
    host = target.host
    environment = Environment.objects.get(pk=deployment.environment_id)
    try:
        with host_proxy(host, tools) as (engine, proxy):
            proxy_apply(proxy, host)
            kept = _kept_container(deployment, host, engine)
            previous = _live_containers(environment, host)
            if not kept:
                engine.ensure_image(reference=deployment.release.image, on_output=lambda _: None)
            HostDeployment.objects.filter(pk=target.pk).update(
                container_id=kept,
                reused_container=bool(kept),
                previous_container_id=previous[0] if previous else "",
                previous_replica_container_ids=previous[1:],
            )
    except (DockerEngineError, ProxyError) as error:
        return f"host {host.name}: {error}"
    return ""


def _step_release(deployment: Deployment, tools: DeployTools) -> None:
    """The release command (migrations, say), once, on the first host, from the new image,
    on that host's network and with the app's variables and secrets."""
    environment = deployment.environment
    config = deployment.release.deploy_config or {}
    command = list(config["release_command"])
    timeout = int(config.get("release_timeout") or DEFAULT_RELEASE_TIMEOUT)
    host = environment.hosts.order_by("name").first()
    assert host is not None, "prepared deployments have hosts"
    secrets = project_secrets(environment.project, environment.secret_names)
    output: list[str] = []
    with tools.engines(host.engine) as engine:
        # A lost worker's attempt may have left its container.
        engine.remove_containers(
            labels={"dockyard.deployment": str(deployment.pk), "dockyard.role": "release"}
        )
        outcome = engine.run_throwaway(
            image=deployment.release.image,
            command=command,
            labels=_labels(deployment, host) | {"dockyard.role": "release"},
            timeout=timeout,
            limits=ContainerLimits(
                memory_bytes=settings.DOCKYARD_TEST_MAX_MEMORY,
                pids=settings.DOCKYARD_TEST_MAX_PIDS,
                network=True,
            ),
            on_output=output.append,
            environment={**deployment.variables, **secrets, "HOST": host.address},
        )
    log = mask_secrets("".join(output), secrets.values())[-RELEASE_LOG_LIMIT:]
    Deployment.objects.filter(pk=deployment.pk).update(release_log=log)
    deployment.release_log = log
    shown = " ".join(command)
    if outcome.timed_out:
        raise _HostFailed(f"the release command `{shown}` ran longer than {timeout}s on {host}")
    if outcome.exit_code != 0:
        raise _HostFailed(
            f"the release command `{shown}` exited with status {outcome.exit_code} on "
            f"{host}; no host was switched"
        )
    _rolling_start(deployment, f"`{shown}` succeeded on {host}", tools)


def _rolling_start(deployment: Deployment, detail: str, tools: DeployTools) -> None:
    do_deployment_transition(deployment=deployment, to=DeploymentStatus.ROLLING, detail=detail)
    _batches_carry(deployment, tools)


def _batches_carry(deployment: Deployment, tools: DeployTools) -> None:
    """Carry the hosts' jobs from this worker, batch after batch, the hosts of a batch side by
    side, until the deployment finishes rolling (every host switched, or one failed).

    No broker hop and no free worker slot to wait for between hosts: what makes a rollback of
    every host take the time of one. Each host's part is still a durable job of its own, noted
    as sent: if this worker dies, the reaper hands the unfinished ones to other workers, which
    go on batch by batch through the broker (`deployment_advance`).
    """
    while deployment.status == DeploymentStatus.ROLLING:
        with transaction.atomic():
            batch = _next_batch(deployment)
            for target in batch:
                job_enqueue(target, send=lambda _task_id: None)
        if not batch:
            return
        _on_each(batch, lambda target: _host_carry(target.pk, target.task_id, tools))
        deployment_advance(deployment_id=deployment.pk, carried_here=True)
        deployment.refresh_from_db()


def _next_batch(deployment: Deployment) -> list[HostDeployment]:
    """The hosts of the first batch that has hosts waiting and not yet sent."""
    waiting = deployment.host_deployments.filter(status=HostStatus.WAITING, task_id="")
    first = waiting.order_by("batch").first()
    if first is None:
        return []
    return list(waiting.filter(batch=first.batch).select_related("host"))


def _batch_enqueue(deployment: Deployment) -> None:
    """Send the jobs of the next batch to the broker, for any deploy worker to take."""
    for target in _next_batch(deployment):
        host_deployment_enqueue(target)


def deployment_advance(*, deployment_id: int, carried_here: bool = False) -> None:
    """After a host's job ended: the next batch, or every host switched (finish), or a host
    failed and its batch is over (revert). Safe to call more than once.

    `carried_here`: the coordinator itself carries the hosts (`_batches_carry`) and goes on
    with what comes next; nothing is sent.
    """
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        if deployment.status != DeploymentStatus.ROLLING:
            return
        targets = list(deployment.host_deployments.select_related("host"))
        if any(target.status in HOST_ACTIVE_STATES for target in targets):
            return  # its batch is still going
        if any(target.status == HostStatus.WAITING and target.task_id for target in targets):
            return  # sent, not yet taken
        failed = [target for target in targets if target.status == HostStatus.FAILED]
        if failed:
            reason = "; ".join(f"host {t.host.name}: {t.failure_reason}" for t in failed)
            Deployment.objects.filter(pk=deployment.pk).update(failure_reason=reason[:10_000])
            do_deployment_transition(
                deployment=deployment, to=DeploymentStatus.REVERTING, detail=reason
            )
            if not carried_here:
                deployment_enqueue(deployment, new_phase=True)
            return
        if any(target.status == HostStatus.WAITING for target in targets):
            if not carried_here:
                _batch_enqueue(deployment)
            return
        # Every host serves the release: the environment's record says so from now on.
        Environment.objects.filter(pk=deployment.environment_id).update(
            live_slot=deployment.slot, current_release=deployment.release, stopped=False
        )
        do_deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.FINISHING,
            detail=f"every host ({len(targets)}) serves release {deployment.release.number}",
        )
        if not carried_here:
            deployment_enqueue(deployment, new_phase=True)


def _step_revert(deployment: Deployment, tools: DeployTools) -> None:
    """A host failed: every host that started the release goes back to the old slot (its
    container still runs), and the new containers go."""
    targets = list(
        deployment.host_deployments.select_related("host").exclude(status=HostStatus.WAITING)
    )
    problems = [
        problem
        for problem in _on_each(targets, lambda target: _host_revert(deployment, target, tools))
        if problem
    ]
    reverted = [
        target.host.name
        for target in deployment.host_deployments.select_related("host")
        if target.status == HostStatus.REVERTED
    ]
    reason = deployment.failure_reason or "a host failed"
    if reverted:
        reason += f"; switched back: {', '.join(reverted)}"
    if problems:
        reason += f"; could not put back: {'; '.join(problems)}"
    deployment_fail(deployment=deployment, reason=reason)


def _host_revert(deployment: Deployment, target: HostDeployment, tools: DeployTools) -> str:
    environment = Environment.objects.get(pk=deployment.environment_id)
    host, new, old = target.host, deployment.slot, environment.live_slot
    backend = environment.proxy_backend
    old_servers = _servers_of(old, target.previous_replica_container_ids) if old else []
    new_servers = slot_servers(new, deployment.replicas) if new and new != old else []
    try:
        with host_proxy(host, tools) as (engine, proxy):
            if old_servers and not environment.stopped:
                ports = environment.slot_ports(old, len(old_servers))
                proxy.switch(
                    backend,
                    to=list(zip(old_servers, ports, strict=True)),
                    address=host.address,
                    away_from=new_servers,
                )
            for server in new_servers:
                proxy.set_server(backend, server, state="drain")
            _drained(proxy, environment, new_servers)
            for server in new_servers:
                proxy.set_server(backend, server, state="maint")
                proxy.health_check_stop(backend, server)
            proxy.remember(lambda: proxy_backends(host))
            _container_withdraw(engine, target)
    except (DockerEngineError, ProxyError) as error:
        return f"{host.name}: {error}"
    if target.status in {HostStatus.SWITCHING, HostStatus.DRAINING, HostStatus.SWITCHED}:
        do_host_transition(
            target=target, to=HostStatus.REVERTED, detail=f"back on {old or 'nothing'}"
        )
    elif target.status in {HostStatus.STARTING, HostStatus.CHECKING}:
        # Its worker is gone (the deployment was abandoned): it never took traffic.
        do_host_transition(
            target=target, to=HostStatus.FAILED, detail="withdrawn: the deployment reverts"
        )
    return ""


def _step_finish(deployment: Deployment, tools: DeployTools) -> None:
    """Every host serves the release: the old slots' containers stop (kept for rollback) and
    each host's proxy file says the new slot is live."""
    targets = list(deployment.host_deployments.select_related("host"))
    problems = [
        problem
        for problem in _on_each(targets, lambda target: _host_finish(deployment, target, tools))
        if problem
    ]
    detail = "old slots stopped, kept for rollback"
    if problems:
        detail += f"; not everywhere: {'; '.join(problems)}"
    do_deployment_transition(deployment=deployment, to=DeploymentStatus.SUCCEEDED, detail=detail)


def _host_finish(deployment: Deployment, target: HostDeployment, tools: DeployTools) -> str:
    environment = Environment.objects.get(pk=deployment.environment_id)
    host = target.host
    try:
        with host_proxy(host, tools) as (engine, proxy):
            proxy.remember(lambda: proxy_backends(host))
            running = {target.container_id, *target.replica_container_ids}
            previous = [target.previous_container_id, *target.previous_replica_container_ids]
            for container in previous:
                if container and container not in running:
                    engine.stop_container(container, timeout=5)
            _prune_kept_containers(environment, host, engine, live=running)
    except (DockerEngineError, ProxyError) as error:
        return f"{host.name}: {error}"
    if target.status == HostStatus.SWITCHED:
        do_host_transition(target=target, to=HostStatus.FINISHED)
    return ""


def _step_stop(deployment: Deployment, tools: DeployTools) -> None:
    """Every host's live slot drained and out of its proxy (the frontend answers 503), its
    containers stopped and kept: a start runs the release again, a rollback can reuse them.

    The environment counts as stopped from the first step: a host that cannot be reached now
    is taken out by the proxies' keeper when it answers again.
    """
    environment = Environment.objects.get(pk=deployment.environment_id)
    proxy_servers_settled(environment)
    Environment.objects.filter(pk=environment.pk).update(stopped=True)
    environment.stopped = True
    hosts = list(environment.hosts.order_by("name"))
    problems = [
        problem
        for problem in _on_each(hosts, lambda host: _host_stop(environment, host, tools))
        if problem
    ]
    if problems:
        deployment_fail(
            deployment=deployment,
            reason="; ".join(problems) + "; its proxy takes the slot out once the host answers",
        )
        return
    do_deployment_transition(
        deployment=deployment,
        to=DeploymentStatus.SUCCEEDED,
        detail=f"stopped on {', '.join(host.name for host in hosts)}; its containers are kept",
    )


def _host_stop(environment: Environment, host: Host, tools: DeployTools) -> str:
    containers = _live_containers(environment, host)
    servers = _servers_of(environment.live_slot, containers[1:]) if environment.live_slot else []
    try:
        with host_proxy(host, tools) as (engine, proxy):
            for server in servers:
                proxy.set_server(environment.proxy_backend, server, state="drain")
            _drained(proxy, environment, servers)
            for server in servers:
                proxy.set_server(environment.proxy_backend, server, state="maint")
            proxy.remember(lambda: proxy_backends(host))
            for container in containers:
                engine.stop_container(container, timeout=10)
    except (DockerEngineError, ProxyError) as error:
        return f"host {host.name}: {error}"
    return ""


def deployment_abandon(*, deployment: Deployment, reason: str, tools: DeployTools) -> Deployment:
    """End a deployment whose coordinator's worker is gone for good, leaving every host as the
    database says: before every host switched, the old release serves (what started goes);
    after, the new one does and the deployment succeeded."""
    deployment = Deployment.objects.select_related("environment", "release").get(pk=deployment.pk)
    if deployment.status in DEPLOYMENT_FINAL_STATES:
        return deployment
    if deployment.status == DeploymentStatus.FINISHING:
        do_deployment_transition(
            deployment=deployment,
            to=DeploymentStatus.SUCCEEDED,
            detail=f"every host switched; {reason} (the old slots were not all stopped)",
        )
        return deployment
    if deployment.status != DeploymentStatus.REVERTING:
        Deployment.objects.filter(pk=deployment.pk).update(
            failure_reason=f"{deployment.failure_reason}; {reason}".strip("; ")
        )
        deployment.failure_reason = f"{deployment.failure_reason}; {reason}".strip("; ")
        if deployment.status == DeploymentStatus.ROLLING:
            do_deployment_transition(
                deployment=deployment, to=DeploymentStatus.REVERTING, detail=reason
            )
        else:
            deployment_fail(deployment=deployment, reason=deployment.failure_reason)
            for target in deployment.host_deployments.select_related("host"):
                _host_release_containers_remove(deployment, target, tools)
            return deployment
    _step_revert(deployment, tools)
    return deployment


def _host_release_containers_remove(
    deployment: Deployment, target: HostDeployment, tools: DeployTools
) -> None:
    try:
        with tools.engines(target.host.engine) as engine:
            engine.remove_containers(
                labels={"dockyard.deployment": str(deployment.pk), "dockyard.role": "release"}
            )
    except DockerEngineError as error:
        logger.error("could not clear deployment %s on %s: %s", deployment.pk, target.host, error)


# --- One host's part -------------------------------------------------------------------------


def host_deployment_execute(
    *, host_deployment_id: int, task_id: str = "", tools: DeployTools
) -> HostDeployment | None:
    """Carry one host's part of a deployment; resumes where a lost worker left it."""
    target = _host_carry(host_deployment_id, task_id or str(uuid.uuid4()), tools)
    if target is not None:
        deployment_advance(deployment_id=target.deployment_id)
    return target


def _host_carry(host_deployment_id: int, task_id: str, tools: DeployTools) -> HostDeployment | None:
    """Claim one host's part and carry its steps; None when this delivery has nothing to do."""
    target = _host_claim(host_deployment_id, task_id)
    if target is None:
        return None
    if job_out_of_attempts(target):
        _host_give_up(
            target=target,
            reason=f"its worker was lost {target.attempts - 1} times; not trying again",
        )
        return target
    with job_heartbeat(target):
        _host_steps(target, tools)
    return target


def _host_claim(host_deployment_id: int, task_id: str) -> HostDeployment | None:
    switched_deployment = None
    claimed = _host_take(host_deployment_id, task_id)
    if isinstance(claimed, int):
        switched_deployment = claimed
        claimed = None
    if switched_deployment is not None:
        # A redelivery after the host switched: its worker may have died before moving the
        # deployment on.
        deployment_advance(deployment_id=switched_deployment)
    return claimed


def _host_take(host_deployment_id: int, task_id: str) -> HostDeployment | int | None:
    """The host's part, claimed; or the id of its deployment when it has switched already."""
    with transaction.atomic():
        target = (
            HostDeployment.objects.select_for_update(of=("self",))
            .select_related(
                "host",
                "deployment",
                "deployment__release",
                "deployment__environment",
                "deployment__environment__project",
            )
            .filter(pk=host_deployment_id)
            .first()
        )
        if target is None or target.status in HOST_FINAL_STATES:
            return None
        if target.status == HostStatus.SWITCHED:
            return target.deployment_id
        if target.deployment.status != DeploymentStatus.ROLLING:
            return None  # reverting or over: the coordinator has it
        if job_take(target, task_id=task_id) == Take.DUPLICATE:
            logger.info("%s is carried by another worker; duplicate", target)
            return None
    return target


def host_deployment_abandon(*, target: HostDeployment, reason: str) -> None:
    """A host's job whose worker is gone for good fails; the deployment reverts (which puts
    this host's proxy back too, whatever step it was in)."""
    _host_give_up(target=target, reason=reason)
    deployment_advance(deployment_id=target.deployment_id)


def _host_give_up(*, target: HostDeployment, reason: str) -> None:
    target = HostDeployment.objects.get(pk=target.pk)
    if target.status in HOST_FINAL_STATES or target.status == HostStatus.SWITCHED:
        return
    HostDeployment.objects.filter(pk=target.pk).update(failure_reason=reason)
    target.failure_reason = reason
    do_host_transition(target=target, to=HostStatus.FAILED, detail=reason)


def _host_steps(target: HostDeployment, tools: DeployTools) -> None:
    steps: dict[str, Callable[[HostDeployment, ContainerEngine, TrafficProxy], None]] = {
        HostStatus.WAITING: _host_step_waiting,
        HostStatus.STARTING: _host_step_start,
        HostStatus.CHECKING: _host_step_check,
        HostStatus.SWITCHING: _host_step_switch,
        HostStatus.DRAINING: _host_step_drain,
    }
    try:
        with host_proxy(target.host, tools) as (engine, proxy):
            while target.status in steps:
                try:
                    steps[target.status](target, engine, proxy)
                except (DockerEngineError, ProxyError) as error:
                    raise _HostFailed(str(error)) from None
    except (_HostFailed, DockerEngineError, ProxyError) as failure:
        reason = failure.reason if isinstance(failure, _HostFailed) else str(failure)
        log = failure.container_log if isinstance(failure, _HostFailed) else ""
        HostDeployment.objects.filter(pk=target.pk).update(
            failure_reason=reason[:10_000], container_log=log
        )
        target.failure_reason, target.container_log = reason, log
        do_host_transition(target=target, to=HostStatus.FAILED, detail=reason)


def _host_step_waiting(
    target: HostDeployment, engine: ContainerEngine, proxy: TrafficProxy
) -> None:
    HostDeployment.objects.filter(pk=target.pk).update(started_at=timezone.now())
    do_host_transition(target=target, to=HostStatus.STARTING)


def _host_step_start(target: HostDeployment, engine: ContainerEngine, proxy: TrafficProxy) -> None:
    deployment, host = target.deployment, target.host
    environment = deployment.environment
    servers = slot_servers(deployment.slot, deployment.replicas)
    ports = environment.slot_ports(deployment.slot, deployment.replicas)

    def checks_begin() -> None:
        # Before the containers start, while nothing listens on the slot's ports: HAProxy's
        # checks run while they start (no round trip after it), and only one that passes from
        # now on counts.
        for server, port in zip(servers, ports, strict=True):
            proxy.health_check_start(
                environment.proxy_backend, server, address=host.address, port=port
            )

    if target.reused_container:
        checks_begin()
        engine.start_container(target.container_id)
        detail = f"restarted the kept container {target.container_id[:12]}"
    else:
        secrets = project_secrets(environment.project, environment.secret_names)
        # A worker lost in this step may have left its containers (same names) behind.
        engine.remove_containers(
            labels={
                "dockyard.deployment": str(deployment.pk),
                "dockyard.role": "app",
                "dockyard.host": host.name,
            }
        )
        checks_begin()
        name = (
            f"dockyard-{environment.project.slug}-{environment.name}-{deployment.slot}"
            f"-r{deployment.release.number}"
        )
        started = [
            engine.start_service(
                image=deployment.release.image,
                name=name if index == 0 else f"{name}-{index + 1}",
                # The app listens where the slot says: host networking leaves no port mapping.
                environment={
                    **deployment.variables,
                    **secrets,
                    "PORT": str(port),
                    "HOST": host.address,
                    "DOCKYARD_REPLICA": str(index + 1),
                },
                labels=_labels(deployment, host)
                | {"dockyard.role": "app", "dockyard.replica": str(index + 1)},
            )
            for index, port in enumerate(ports)
        ]
        HostDeployment.objects.filter(pk=target.pk).update(
            container_id=started[0], replica_container_ids=started[1:]
        )
        target.container_id, target.replica_container_ids = started[0], started[1:]
        detail = ", ".join(container[:12] for container in started)
        detail = f"container{'s' if len(started) > 1 else ''} {detail}"
    listening = ", ".join(f"{host.address}:{port}" for port in ports)
    do_host_transition(target=target, to=HostStatus.CHECKING, detail=f"{detail} on {listening}")


def _host_step_check(target: HostDeployment, engine: ContainerEngine, proxy: TrafficProxy) -> None:
    deployment = target.deployment
    environment = deployment.environment
    backend = environment.proxy_backend
    servers = slot_servers(deployment.slot, deployment.replicas)
    containers = [target.container_id, *target.replica_container_ids]
    deadline = time.monotonic() + environment.health_timeout_seconds
    while True:
        healths = [proxy.health(backend, server) for server in servers]
        if all(health.healthy for health in healths):
            for server in servers:
                proxy.health_check_stop(backend, server)
            do_host_transition(
                target=target,
                to=HostStatus.SWITCHING,
                detail="; ".join(health.detail for health in healths),
            )
            return
        states = {container: engine.container_state(container) for container in containers}
        stopped = [container for container, state in states.items() if state != "running"]
        if stopped or time.monotonic() > deadline:
            failing = stopped[0] if stopped else containers[0]
            unhealthy = next(health for health in healths if not health.healthy)
            why = (
                f"the container {states[failing] or 'vanished'}"
                if stopped
                else f"not healthy within {environment.health_timeout_seconds}s"
            )
            log = engine.container_logs(failing, tail=CONTAINER_LOG_LINES)
            for server in servers:
                proxy.health_check_stop(backend, server)
            # The broken containers never took traffic; they go, the old slot keeps serving.
            _container_withdraw(engine, target)
            raise _HostFailed(f"health check failed: {why} ({unhealthy.detail})", log)
        time.sleep(environment.health_interval_ms / 1000)


def _host_step_switch(target: HostDeployment, engine: ContainerEngine, proxy: TrafficProxy) -> None:
    deployment, host = target.deployment, target.host
    environment = Environment.objects.get(pk=deployment.environment_id)
    backend, new = environment.proxy_backend, deployment.slot
    servers = slot_servers(new, deployment.replicas)
    ports = environment.slot_ports(new, deployment.replicas)
    draining = _old_servers(target, environment)
    proxy.switch(
        backend,
        to=list(zip(servers, ports, strict=True)),
        address=host.address,
        away_from=draining,
    )
    do_host_transition(
        target=target,
        to=HostStatus.DRAINING,
        detail=f"traffic to {', '.join(servers)}"
        + (f"; {', '.join(draining)} draining" if draining else ""),
    )


def _host_step_drain(target: HostDeployment, engine: ContainerEngine, proxy: TrafficProxy) -> None:
    environment = Environment.objects.get(pk=target.deployment.environment_id)
    draining = _old_servers(target, environment)
    _drained(proxy, environment, draining)
    for server in draining:
        proxy.set_server(environment.proxy_backend, server, state="maint")
    do_host_transition(
        target=target,
        to=HostStatus.SWITCHED,
        detail=f"{', '.join(draining)} drained; its containers run on until every host switched"
        if draining
        else "first release here",
    )


def _old_servers(target: HostDeployment, environment: Environment) -> list[str]:
    """The servers that served on the host before: the live slot's, one per container that
    ran there (none before the first release, or when the slot is the new one)."""
    old = environment.live_slot
    if not old or old == target.deployment.slot:
        return []
    return _servers_of(old, target.previous_replica_container_ids)


def _servers_of(slot: str, extra_containers: list[str]) -> list[str]:
    return slot_servers(slot, 1 + len(extra_containers))


def _drained(proxy: TrafficProxy, environment: Environment, servers: list[str]) -> None:
    """Wait until `servers` serve no request, at most the environment's drain timeout."""
    deadline = time.monotonic() + environment.drain_timeout_seconds
    backend = environment.proxy_backend
    while time.monotonic() < deadline:
        if sum(proxy.sessions(backend, server) for server in servers) == 0:
            return
        time.sleep(0.02)


def _container_withdraw(engine: ContainerEngine, target: HostDeployment) -> None:
    """The new containers go: a kept one (a rollback restarted it) is stopped and kept as it
    was, for the next rollback; new ones are removed."""
    if target.reused_container:
        engine.stop_container(target.container_id, timeout=5)
        return
    for container in [target.container_id, *target.replica_container_ids]:
        if container:
            engine.remove_container(container)


# --- Moves -----------------------------------------------------------------------------------


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
        fields = ["status", "finished_at"]
        if to in DEPLOYMENT_FINAL_STATES:
            locked.finished_at = timezone.now()
            dispatch.queue_deployment_notifications(deployment_id=locked.pk)
        if to == DeploymentStatus.SUCCEEDED and watch_begins(locked):
            fields += ["watch_state", "watch_until"]
        locked.save(update_fields=fields)
    deployment.status, deployment.finished_at = locked.status, locked.finished_at
    deployment.watch_state, deployment.watch_until = locked.watch_state, locked.watch_until
    return deployment


def do_host_transition(*, target: HostDeployment, to: str, detail: str = "") -> HostDeployment:
    """Move one host's part to its next step under a row lock; recorded as an event of the
    deployment naming the host."""
    with transaction.atomic():
        locked = HostDeployment.objects.select_for_update().get(pk=target.pk)
        check_host_transition(locked.status, to)
        DeploymentEvent.objects.create(
            deployment_id=locked.deployment_id,
            host_id=locked.host_id,
            from_status=locked.status,
            to_status=to,
            detail=detail[:10_000],
        )
        locked.status = to
        # When the host's part ended: switched (what follows is the coordinator's), or failed.
        if locked.finished_at is None and (to in HOST_FINAL_STATES or to == HostStatus.SWITCHED):
            locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
    target.status, target.finished_at = locked.status, locked.finished_at
    return target


# --- Containers kept for rollback ------------------------------------------------------------


def _labels(deployment: Deployment, host: Host) -> dict[str, str]:
    environment = deployment.environment
    return {
        "dockyard.project": environment.project.slug,
        "dockyard.environment": environment.name,
        "dockyard.slot": deployment.slot,
        "dockyard.release": str(deployment.release.number),
        "dockyard.deployment": str(deployment.pk),
        "dockyard.host": host.name,
    }


def _kept_container(deployment: Deployment, host: Host, engine: ContainerEngine) -> str:
    """For a rollback to one container per host: a stopped container of this very release in
    the new slot on `host`, if one was kept."""
    if deployment.kind != DeploymentKind.ROLLBACK or deployment.replicas != 1:
        return ""
    earlier = HostDeployment.objects.filter(
        deployment__environment_id=deployment.environment_id,
        deployment__release_id=deployment.release_id,
        deployment__slot=deployment.slot,
        host=host,
        status=HostStatus.FINISHED,
    ).exclude(container_id="")
    for candidate in earlier.order_by("-finished_at", "-id"):
        if engine.container_state(candidate.container_id) in {"exited", "created"}:
            return candidate.container_id
    return ""


def _live_containers(environment: Environment, host: Host) -> list[str]:
    """The containers serving the environment on `host` now, the first replica's first (none
    before its first release)."""
    return [live.container_id for live in live_containers(environment, host=host)]


def _prune_kept_containers(
    environment: Environment, host: Host, engine: ContainerEngine, *, live: set[str]
) -> None:
    """Keep the newest few stopped first replicas on `host` for rollbacks (a rollback restarts
    one when it runs one replica); remove older ones, and every other stopped replica."""
    finished = HostDeployment.objects.filter(
        deployment__environment=environment, host=host, status=HostStatus.FINISHED
    ).exclude(container_id="")
    kept: list[str] = []
    removed: list[str] = []
    for container_id, replicas in finished.order_by("-finished_at", "-id").values_list(
        "container_id", "replica_container_ids"
    ):
        removed += [replica for replica in replicas if replica not in live]
        if container_id not in kept and container_id not in live:
            kept.append(container_id)
    for container_id in [*kept[settings.DOCKYARD_KEEP_CONTAINERS :], *removed]:
        engine.remove_container(container_id)


def _on_each(targets: list[Item], work: Callable[[Item], Result]) -> list[Result]:
    """`work` for every host side by side (threads: the hosts' engines answer slowly, one
    waiting on another would add up); each thread closes its own database connection."""

    def one(target: Item) -> Result:
        try:
            return work(target)
        finally:
            connection.close()

    if len(targets) <= 1:
        return [work(target) for target in targets]
    with ThreadPoolExecutor(max_workers=min(len(targets), 8)) as pool:
        return list(pool.map(one, targets))
