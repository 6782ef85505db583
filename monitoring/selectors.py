"""What /metrics reports, read from the database at scrape time.

Web and workers are separate processes (and hosts), so no process's memory holds the truth;
the database does. Every figure is one aggregate query: counts per group, and histograms as
one `count(*) FILTER (WHERE value <= bound)` per bucket, never a loop over rows in Python.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum

from builds.models import CacheSource, LayerBuild, LayerRole
from pipelines.models import PipelineRun, Stage
from releases.models import Deployment
from webhooks.models import Delivery

# Seconds. Queueing is usually sub-second and bad when it reaches minutes; stages run from
# a second (config) to an hour (a cold build with tests).
QUEUE_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STAGE_DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass(frozen=True)
class Histogram:
    # (upper bound in seconds, how many observations are at or below it), bounds ascending.
    buckets: tuple[tuple[float, int], ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True)
class LabelledCount:
    labels: tuple[str, ...]
    value: int


def run_counts() -> list[LabelledCount]:
    """How many runs each project has in each status."""
    rows = (
        PipelineRun.objects.values_list("project__slug", "status")
        .annotate(runs=Count("pk"))
        .order_by("project__slug", "status")
    )
    return [LabelledCount((slug, status), runs) for slug, status, runs in rows]


def run_queue_latency(bounds: Sequence[float] = QUEUE_LATENCY_BUCKETS) -> Histogram:
    """From a run's creation to the start of its first stage, over every run that started."""
    started = Stage.objects.filter(position=0, started_at__isnull=False).annotate(
        seconds=_interval(F("started_at") - F("run__created_at"))
    )
    return _histogram(started, bounds)


def stage_durations(bounds: Sequence[float] = STAGE_DURATION_BUCKETS) -> dict[str, Histogram]:
    """How long each kind of stage ran, over every stage that started and ended."""
    ended = (
        Stage.objects.filter(started_at__isnull=False, finished_at__isnull=False)
        .annotate(seconds=_interval(F("finished_at") - F("started_at")))
        .values("name")
        .annotate(**_histogram_aggregates(bounds))
        .order_by("name")
    )
    return {row["name"]: _histogram_from_row(row, bounds) for row in ended}


def base_layer_counts() -> dict[str, int]:
    """Base layers the build stage needed, by where each came from (built = a cache miss).

    App layers are built on every run by design and say nothing about the cache.
    """
    rows = (
        LayerBuild.objects.filter(role=LayerRole.BASE)
        .order_by()
        .values_list("source")
        .annotate(layers=Count("pk"))
    )
    counts = dict.fromkeys(CacheSource.values, 0)
    counts.update(dict(rows))
    return counts


def deployment_counts() -> list[LabelledCount]:
    """How many deployments of each kind are in each status."""
    rows = (
        Deployment.objects.values_list("kind", "status")
        .annotate(deployments=Count("pk"))
        .order_by("kind", "status")
    )
    return [LabelledCount((kind, status), deployments) for kind, status, deployments in rows]


def delivery_counts() -> list[LabelledCount]:
    """Stored webhook deliveries per forge, by what came of them: a run, nothing, or not yet
    acted on. Refused deliveries (bad signature, unknown repository) are never stored."""
    rows = (
        Delivery.objects.values("forge")
        .annotate(
            run_started=Count("pk", filter=Q(acted_at__isnull=False, run__isnull=False)),
            nothing_started=Count("pk", filter=Q(acted_at__isnull=False, run__isnull=True)),
            pending=Count("pk", filter=Q(acted_at__isnull=True)),
        )
        .order_by("forge")
    )
    return [
        LabelledCount((row["forge"], outcome), row[outcome])
        for row in rows
        for outcome in ("run_started", "nothing_started", "pending")
    ]


def _interval(expression: Any) -> ExpressionWrapper:
    return ExpressionWrapper(expression, output_field=DurationField())


def _histogram_aggregates(bounds: Sequence[float]) -> dict[str, Any]:
    aggregates: dict[str, Any] = {
        f"le_{index}": Count("pk", filter=Q(seconds__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(bounds)
    }
    aggregates["observations"] = Count("pk")
    aggregates["total"] = Sum("seconds")
    return aggregates


def _histogram(queryset: QuerySet[Any], bounds: Sequence[float]) -> Histogram:
    return _histogram_from_row(queryset.aggregate(**_histogram_aggregates(bounds)), bounds)


def _histogram_from_row(row: Mapping[str, Any], bounds: Sequence[float]) -> Histogram:
    total: timedelta | None = row["total"]
    return Histogram(
        buckets=tuple((float(bound), row[f"le_{index}"]) for index, bound in enumerate(bounds)),
        count=row["observations"],
        sum_seconds=total.total_seconds() if total is not None else 0.0,
    )
