"""Writes for releases and environments, and requests for deployments (promote, roll back),
checked and audited; releases.sending sends them, releases.executor carries them out."""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Max

from audit.actors import Actor, current_actor
from audit.models import AuditAction
from audit.services import audit_record
from projects.models import Project
from projects.spec import MAX_REPLICAS, DeploySpec
from releases.access import can_deploy_to
from releases.models import Deployment, DeploymentEvent, Environment, Host, Release
from releases.selectors import rollback_candidates
from releases.sending import deployment_enqueue
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    RELEASE_MOVES,
    DeploymentKind,
    DeploymentStatus,
    Slot,
)
from releases.watch import watches_supersede

logger = logging.getLogger(__name__)

DEPLOYMENT_AUDIT_ACTIONS = {
    DeploymentKind.DEPLOY: AuditAction.DEPLOY,
    DeploymentKind.AUTO: AuditAction.AUTO_DEPLOY,
    DeploymentKind.PROMOTE: AuditAction.PROMOTE,
    DeploymentKind.ROLLBACK: AuditAction.ROLLBACK,
    DeploymentKind.RESTART: AuditAction.RESTART,
    DeploymentKind.STOP: AuditAction.STOP,
    DeploymentKind.START: AuditAction.START,
    DeploymentKind.SCALE: AuditAction.SCALE,
}

# What an operator does to the release that serves (releases.states.DeploymentKind).
OPERATIONS = frozenset(
    {DeploymentKind.RESTART, DeploymentKind.STOP, DeploymentKind.START, DeploymentKind.SCALE}
)

User = AbstractBaseUser | AnonymousUser
PORT_ALLOCATION_ATTEMPTS = 5


class DeploymentRefused(Exception):
    """A deployment that may not happen now, and why (busy, not allowed, not yet tested)."""


def local_host() -> Host:
    """The host a one-machine install deploys to: the deploy worker's own engine, on
    DOCKYARD_APP_ADDRESS. Made the first time it is needed."""
    host, _ = Host.objects.get_or_create(
        name=Host.LOCAL, defaults={"address": str(settings.DOCKYARD_APP_ADDRESS)}
    )
    return host


def environments_sync(*, project: Project, deploy: DeploySpec) -> list[Environment]:
    """Create the environments dockyard.yml names that the project does not have yet, on the
    local host (operators give them other hosts: admin, API, `manage.py addhost`).

    Existing environments are left as operators edited them. Each host's proxy learns of a new
    environment when it is first deployed.
    """
    created = []
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).get()
        existing = {
            environment.name: environment
            for environment in Environment.objects.filter(project=project)
        }
        for position, spec in enumerate(deploy.environments):
            if spec.name in existing:
                continue
            branches = " ".join(spec.branches) or (project.default_branch if spec.auto else "")
            environment = _environment_create_with_ports(
                project=project,
                name=spec.name,
                position=position,
                health_path=deploy.health,
                auto_deploy_branches=branches if spec.auto else "",
            )
            environment.hosts.add(local_host())
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
    return created


def _environment_create_with_ports(**fields: Any) -> Environment:
    """An environment with free ports. The ports are unique in the database, so two projects
    creating environments at once cannot share one: the loser of a race picks again."""
    for attempt in range(PORT_ALLOCATION_ATTEMPTS):
        frontend, blue, green = _free_ports()
        try:
            with transaction.atomic():  # a savepoint: the race lost is undone alone
                return Environment.objects.create(
                    frontend_port=frontend, blue_port=blue, green_port=green, **fields
                )
        except IntegrityError:
            if attempt == PORT_ALLOCATION_ATTEMPTS - 1:
                raise
            logger.info("ports %s taken meanwhile; picking again", (frontend, blue, green))
    raise AssertionError("unreachable: the loop returns or raises")


def deployment_request(
    *,
    environment: Environment,
    release: Release,
    kind: str = DeploymentKind.DEPLOY,
    user: User | None = None,
    variables: dict[str, str] | None = None,
    actor: Actor | None = None,
    reason: str = "",
) -> Deployment:
    """Queue a deployment of `release` to `environment`, or say why not.

    Refused when the user may not deploy there, when the release has not succeeded in the
    environment it must pass first (`after`), or while another deployment of the environment
    runs (a database constraint decides); an auto-deploy also while the environment is stopped
    or its auto-deploys are paused (a deploy or promotion resumes them). The request is audited
    as `actor`'s (by default whoever the context names, with `user`); `reason` says why in its
    timeline, when not a person's request.
    """
    # Fresh from the database: the caller's copy may predate the last deployment.
    environment = Environment.objects.select_related("project", "after").get(pk=environment.pk)
    if release.project_id != environment.project_id:
        raise DeploymentRefused(f"{release} is not a release of {environment.project.slug}")
    if user is not None and not can_deploy_to(user, environment):
        raise DeploymentRefused(f"{user} may not deploy to {environment.name}")
    if kind == DeploymentKind.AUTO and environment.auto_deploy_paused:
        raise DeploymentRefused(
            f"auto-deploys to {environment.name} are paused ({environment.auto_deploy_paused}); "
            "a deploy or promotion by a person resumes them"
        )
    if kind == DeploymentKind.AUTO and environment.stopped:
        raise DeploymentRefused(f"{environment.name} is stopped; start it first")
    if (
        kind in RELEASE_MOVES
        and environment.after is not None
        and not _succeeded_in(release, environment.after)
    ):
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
                detail=reason or f"{kind} of release {release.number} requested by {who}",
            )
            watches_supersede(environment, by=deployment)
            if kind in {DeploymentKind.DEPLOY, DeploymentKind.PROMOTE}:
                # Someone chose a release for it: pushes may deploy here again.
                Environment.objects.filter(pk=environment.pk).update(auto_deploy_paused="")
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
    *,
    environment: Environment,
    release: Release | None = None,
    user: User | None = None,
    actor: Actor | None = None,
    reason: str = "",
) -> Deployment:
    """Deploy an earlier good release again, with the settings it ran with: `release` when
    given (one of releases.selectors.rollback_candidates), else the one that served before."""
    # Fresh from the database: the caller's copy may predate the last deployment.
    environment = Environment.objects.get(pk=environment.pk)
    candidates = rollback_candidates(environment)
    if release is None:
        previous = candidates[0] if candidates else None
    else:
        previous = next((c for c in candidates if c.release_id == release.pk), None)
        if previous is None:
            raise DeploymentRefused(
                f"release {release.number} is not one {environment.name} can roll back to"
            )
    if previous is None:
        raise DeploymentRefused(f"{environment.name} has no earlier good release to roll back to")
    return deployment_request(
        environment=environment,
        release=previous.release,
        kind=DeploymentKind.ROLLBACK,
        user=user,
        variables=previous.variables,
        actor=actor,
        reason=reason,
    )


def environment_operate(
    *,
    environment: Environment,
    kind: str,
    user: User | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Restart, stop, start or scale (environment_scale) what serves in `environment`: a
    deployment of the release it has, with the variables it runs with, so the same switch, lock
    and history apply; or say why not."""
    environment = Environment.objects.select_related("current_release").get(pk=environment.pk)
    if kind not in OPERATIONS:
        raise DeploymentRefused(f"'{kind}' is not one of restart, stop, start or scale")
    release = environment.current_release
    if release is None:
        raise DeploymentRefused(f"nothing serves in {environment.name} yet: deploy a release")
    if kind == DeploymentKind.START and not environment.stopped:
        raise DeploymentRefused(f"{environment.name} is running; restart it instead")
    if kind != DeploymentKind.START and environment.stopped:
        raise DeploymentRefused(f"{environment.name} is stopped; start it first")
    last = (
        environment.deployments.filter(release=release, status=DeploymentStatus.SUCCEEDED)
        .exclude(kind=DeploymentKind.STOP)
        .order_by("-created_at", "-id")
        .first()
    )
    return deployment_request(
        environment=environment,
        release=release,
        kind=kind,
        user=user,
        variables=last.variables if last is not None else None,
        actor=actor,
    )


def environment_scale(
    *,
    environment: Environment,
    replicas: int,
    user: User | None = None,
    actor: Actor | None = None,
) -> Deployment:
    """Run `replicas` containers of the release that serves on each host of `environment`
    (a deployment of that release, through the same switch), or say why not."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise DeploymentRefused(f"replicas must be from 1 to {MAX_REPLICAS}, not {replicas}")
    environment = Environment.objects.select_related("current_release").get(pk=environment.pk)
    if environment.current_release is None:
        raise DeploymentRefused(f"nothing serves in {environment.name} yet: deploy a release")
    if environment.stopped:
        raise DeploymentRefused(f"{environment.name} is stopped; start it first")
    if user is not None and not can_deploy_to(user, environment):
        raise DeploymentRefused(f"{user} may not deploy to {environment.name}")
    replica_ports_allocate(environment=environment, replicas=replicas)
    Environment.objects.filter(pk=environment.pk).update(replicas=replicas)
    return environment_operate(
        environment=environment, kind=DeploymentKind.SCALE, user=user, actor=actor
    )


def replica_ports_allocate(*, environment: Environment, replicas: int) -> None:
    """Give each slot of `environment` ports for `replicas` containers (the first listens on
    the slot's own port), from DOCKYARD_SLOT_PORTS; ports it has already are kept."""
    wanted = replicas - 1
    for attempt in range(PORT_ALLOCATION_ATTEMPTS):
        with transaction.atomic():
            locked = Environment.objects.select_for_update().get(pk=environment.pk)
            ports = {slot: list(locked.replica_ports.get(slot, [])) for slot in Slot.values}
            if all(len(ports[slot]) >= wanted for slot in Slot.values):
                environment.replica_ports = locked.replica_ports
                return
            used = _used_ports()
            free = [port for port in settings.DOCKYARD_SLOT_PORTS if port not in used]
            needed = sum(max(wanted - len(ports[slot]), 0) for slot in Slot.values)
            if len(free) < needed:
                raise DeploymentRefused(
                    f"no free ports left for {replicas} replicas: widen DOCKYARD_SLOT_PORTS"
                )
            for slot in Slot.values:
                while len(ports[slot]) < wanted:
                    ports[slot].append(free.pop(0))
            Environment.objects.filter(pk=locked.pk).update(replica_ports=ports)
        # Another environment may have taken the same ports meanwhile: checked after commit.
        if not _ports_shared(environment.pk, ports):
            environment.replica_ports = ports
            return
        logger.info("replica ports %s taken meanwhile; picking again (%s)", ports, attempt)
        Environment.objects.filter(pk=environment.pk).update(replica_ports={})
    raise DeploymentRefused("could not take free ports for the replicas; try again")


def _used_ports(*, besides: int | None = None) -> set[int]:
    """Every port an environment (but the one with pk `besides`) listens on or has taken."""
    used: set[int] = set()
    environments = Environment.objects.exclude(pk=besides) if besides else Environment.objects
    for frontend, blue, green, extra in environments.values_list(
        "frontend_port", "blue_port", "green_port", "replica_ports"
    ):
        used.update((frontend, blue, green))
        for ports in (extra or {}).values():
            used.update(ports)
    return used


def _ports_shared(environment_id: int, ports: dict[str, list[int]]) -> bool:
    mine = {port for slot_ports in ports.values() for port in slot_ports}
    return bool(mine & _used_ports(besides=environment_id))


def _succeeded_in(release: Release, environment: Environment) -> bool:
    return environment.deployments.filter(
        release=release, status=DeploymentStatus.SUCCEEDED
    ).exists()


def release_create(
    *,
    project: Project,
    run_id: int,
    commit_sha: str,
    image: str,
    deploy_config: dict[str, Any],
) -> Release:
    """The release of run `run_id`, numbered next for the project; the existing one when the
    run has one already (a release never changes)."""
    existing = Release.objects.filter(run_id=run_id).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).get()
        last = Release.objects.filter(project=project).aggregate(last=Max("number"))["last"]
        return Release.objects.create(
            project=project,
            number=(last or 0) + 1,
            run_id=run_id,
            commit_sha=commit_sha,
            image=image,
            deploy_config=deploy_config,
        )


def _free_ports() -> tuple[int, int, int]:
    used = _used_ports()
    frontend = next((p for p in settings.DOCKYARD_FRONTEND_PORTS if p not in used), None)
    slots = [p for p in settings.DOCKYARD_SLOT_PORTS if p not in used][:2]
    if frontend is None or len(slots) < 2:
        raise DeploymentRefused(
            "no free ports left for a new environment: widen DOCKYARD_FRONTEND_PORTS or "
            "DOCKYARD_SLOT_PORTS"
        )
    return frontend, slots[0], slots[1]
