"""Reads for releases, environments and deployments."""

from django.db.models import QuerySet

from pipelines.models import Project
from releases.models import Deployment, Environment


def environment_history(environment: Environment) -> QuerySet[Deployment]:
    """Who deployed which release here, when, from which, with what outcome."""
    return environment.deployments.select_related(
        "release", "previous_release", "requested_by"
    ).prefetch_related("events")


def project_environments(project: Project) -> QuerySet[Environment]:
    return Environment.objects.filter(project=project).select_related("current_release")
