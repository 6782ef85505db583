"""Reads for webhook deliveries."""

from django.db.models import QuerySet

from pipelines.models import Project
from webhooks.models import Delivery


def project_deliveries(project: Project) -> QuerySet[Delivery]:
    """The project's deliveries, newest first, without their bodies (they can be large)."""
    return Delivery.objects.filter(project=project).defer("body", "headers").select_related("run")
