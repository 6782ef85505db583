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
from projects.spec import DeploySpec
from releases.access import can_deploy_to
from releases.models import Deployment, DeploymentEvent, Environment, Host, Release
from releases.selectors import rollback_candidates
from releases.sending import deployment_enqueue
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
)

logger = logging.getLogger(__name__)

DEPLOYMENT_AUDIT_ACTIONS = {
    DeploymentKind.DEPLOY: AuditAction.DEPLOY,
    DeploymentKind.AUTO: AuditAction.AUTO_DEPLOY,
    DeploymentKind.PROMOTE: AuditAction.PROMOTE,
    DeploymentKind.ROLLBACK: AuditAction.ROLLBACK,
}

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
    *,
    environment: Environment,
    release: Release | None = None,
    user: User | None = None,
    actor: Actor | None = None,
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
    )


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
