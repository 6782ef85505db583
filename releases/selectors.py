"""Reads for releases, environments and deployments."""

from django.db.models import QuerySet

from projects.models import Project
from releases.models import Deployment, Environment, Release
from releases.states import DeploymentStatus


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


def rollback_target(environment: Environment) -> Deployment | None:
    """The deployment a rollback repeats: the last good one of another release than now."""
    succeeded = environment.deployments.filter(status=DeploymentStatus.SUCCEEDED)
    if environment.current_release_id is not None:
        succeeded = succeeded.exclude(release_id=environment.current_release_id)
    return succeeded.select_related("release").order_by("-finished_at", "-id").first()


def active_deployment(environment: Environment) -> Deployment | None:
    return (
        environment.deployments.exclude(
            status__in=[DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED]
        )
        .select_related("release")
        .first()
    )
