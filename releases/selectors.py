"""Reads for releases, environments and deployments."""

from dataclasses import dataclass

from django.db.models import QuerySet

from projects.models import Project
from releases.models import Deployment, Environment, Host, HostDeployment, Release
from releases.states import DeploymentKind, DeploymentStatus, HostStatus


def environment_history(environment: Environment) -> QuerySet[Deployment]:
    """Who deployed which release here, when, from which, with what outcome."""
    return environment.deployments.select_related(
        "release", "previous_release", "requested_by"
    ).prefetch_related("events")


def project_environments(project: Project) -> QuerySet[Environment]:
    return Environment.objects.filter(project=project).select_related("current_release")


def project_releases(project: Project) -> QuerySet[Release]:
    return Release.objects.filter(project=project).order_by("-number")


def promotable_releases(environment: Environment) -> QuerySet[Release]:
    """The releases that may go here: those that succeeded in `after`, else all of them."""
    releases = project_releases(environment.project)
    if environment.after_id is None:
        return releases
    return releases.filter(
        deployments__environment_id=environment.after_id,
        deployments__status=DeploymentStatus.SUCCEEDED,
    ).distinct()


def rollback_candidates(environment: Environment) -> list[Deployment]:
    """The deployments a rollback may repeat, the default first: for each release that served
    here, other than the current one, its last good deployment, newest first.

    A release that a rollback moved away from since it last served is left out: after rolling
    back from 3 to 2, the next rollback goes on to 1, never back to 3 (deploying 3 again is a
    promotion, and makes it a candidate again).
    """
    succeeded = (
        environment.deployments.filter(status=DeploymentStatus.SUCCEEDED)
        # A stop ran nothing: the deployment that started its release says how it ran.
        .exclude(kind=DeploymentKind.STOP)
        .select_related("release")
        .order_by("-finished_at", "-id")
    )
    rolled_away: set[int] = set()
    chosen: set[int] = set()
    candidates: list[Deployment] = []
    # Newest first: a release deployed again after being rolled away from is met before the
    # rollback that left it, and counts.
    for deployment in succeeded:
        release_id = deployment.release_id
        if not (
            release_id == environment.current_release_id
            or release_id in chosen
            or release_id in rolled_away
        ):
            chosen.add(release_id)
            candidates.append(deployment)
        if deployment.kind == DeploymentKind.ROLLBACK and deployment.previous_release_id:
            rolled_away.add(deployment.previous_release_id)
    return candidates


def rollback_target(environment: Environment) -> Deployment | None:
    """The deployment a rollback repeats unless told otherwise: the release that served here
    before the current one (see rollback_candidates)."""
    candidates = rollback_candidates(environment)
    return candidates[0] if candidates else None


def active_deployment(environment: Environment) -> Deployment | None:
    return (
        environment.deployments.exclude(
            status__in=[DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED]
        )
        .select_related("release")
        .first()
    )


@dataclass(frozen=True)
class HostRollback:
    """What a rollback will do on one host: what it runs now and what it will run."""

    host: str
    address: str
    now_container: str
    # The stopped container of the target release kept on this host ("" if none was: a new
    # one starts from the release's image).
    kept_container: str


def rollback_plan(environment: Environment, target: Deployment) -> list[HostRollback]:
    """For each of the environment's hosts, what rolling back to `target` means there (all
    hosts switch at once; a kept container makes it a restart)."""
    finished = HostDeployment.objects.filter(
        deployment__environment=environment, status=HostStatus.FINISHED
    ).exclude(container_id="")
    live = {
        host_id: container
        for host_id, container in finished.filter(
            deployment__slot=environment.live_slot, deployment__release=environment.current_release
        )
        .order_by("finished_at", "id")
        .values_list("host_id", "container_id")
    }
    kept = {
        host_id: container
        for host_id, container in finished.filter(
            deployment__slot=target.slot, deployment__release=target.release
        )
        .order_by("finished_at", "id")
        .values_list("host_id", "container_id")
    }
    return [
        HostRollback(
            host=host.name,
            address=host.address,
            now_container=live.get(host.pk, "")[:12],
            kept_container=kept.get(host.pk, "")[:12],
        )
        for host in environment.hosts.order_by("name")
    ]


@dataclass(frozen=True)
class LiveContainer:
    """A container serving an environment now: where, in which slot, of which release, which
    of the release's replicas on its host (from 1)."""

    host: Host
    slot: str
    release_number: int
    container_id: str
    replica: int = 1


def live_containers(environment: Environment, *, host: Host | None = None) -> list[LiveContainer]:
    """The containers of the live slot on each of the environment's hosts (or on `host`), by
    host name: on each host, those the newest finished deployment into the live slot left
    there (each replica's). A query per host, whatever the number of deployments before."""
    if not environment.live_slot:
        return []
    hosts = [host] if host is not None else list(environment.hosts.order_by("name"))
    found: list[LiveContainer] = []
    for one in hosts:
        part = (
            HostDeployment.objects.filter(
                deployment__environment=environment,
                deployment__slot=environment.live_slot,
                host=one,
                status=HostStatus.FINISHED,
            )
            .exclude(container_id="")
            .select_related("host", "deployment__release")
            .order_by("-finished_at", "-id")
            .first()
        )
        if part is None:
            continue
        containers = [part.container_id, *part.replica_container_ids]
        found += [
            LiveContainer(
                host=part.host,
                slot=part.deployment.slot,
                release_number=part.deployment.release.number,
                container_id=container_id,
                replica=replica,
            )
            for replica, container_id in enumerate(containers, start=1)
        ]
    return found
