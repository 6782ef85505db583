"""Reads for webhook deliveries."""

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from pipelines.models import RunEvent
from projects.models import Project
from webhooks.models import CommitStatusReport, Delivery


def project_deliveries(project: Project) -> QuerySet[Delivery]:
    """The project's deliveries, newest first, without their bodies (they can be large)."""
    return Delivery.objects.filter(project=project).defer("body", "headers").select_related("run")


def commit_statuses_unreported(*, since: datetime, before: datetime) -> list[tuple[int, int]]:
    """(run id, event id) of each run whose newest state, reached between `since` and `before`,
    the forge was neither told nor given up on: its report was lost on the way.

    Only the newest state counts: an older one would be refused once a newer one is told.
    """
    newer = RunEvent.objects.filter(run=OuterRef("run"), stage__isnull=True, pk__gt=OuterRef("pk"))
    settled = CommitStatusReport.objects.filter(run=OuterRef("run")).filter(
        Q(last_event_id__gte=OuterRef("pk")) | Q(gave_up_event_id__gte=OuterRef("pk"))
    )
    lagging = (
        RunEvent.objects.filter(stage__isnull=True, at__gte=since, at__lt=before)
        .exclude(run__project__forge_token="")
        .exclude(run__project__forge_repository="")
        .exclude(Exists(newer))
        .exclude(Exists(settled))
        .order_by("pk")
    )
    return list(lagging.values_list("run_id", "pk"))
