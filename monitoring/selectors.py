"""What /metrics reports, read from the database at scrape time.

Web and workers are separate processes (and hosts), so no process's memory holds the truth;
the database does. Every figure is aggregated in SQL: counts per group, and histograms as one
`count(*) FILTER (WHERE value <= bound)` per bucket, never a loop over rows in Python.

A scrape must not cost more as history grows (Prometheus scrapes every 15 s, forever). What
ended long enough ago (a run finished, a stage ended, a delivery acted on) does not change
again: it is added once to a roll-up (monitoring.models.MetricsRollup) and only the rows that
ended since are counted at each scrape, through an index on the time they ended.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from builds.models import CacheSource, LayerBuild, LayerRole
from monitoring.models import MetricsRollup
from pipelines.models import PipelineRun, Stage
from projects.models import Project
from releases.models import Deployment, Environment, TrafficSample
from releases.traffic_selectors import traffic_grouped
from webhooks.models import Delivery

# Seconds. Queueing is usually sub-second and bad when it reaches minutes; stages run from
# a second (config) to an hour (a cold build with tests).
QUEUE_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STAGE_DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# A row's end time is written in a transaction that commits within moments; one still open
# after minutes would be missed by the roll-up, so only what ended this long ago is rolled up.
SETTLE_MARGIN = timedelta(minutes=5)
# Rolling up on every scrape would cost its extra queries for a few seconds' rows.
SETTLE_EVERY = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# In the roll-up, a row's labels joined by a separator no label contains.
LABEL_SEPARATOR = "\x1f"
# The apps' request figures are over the request samples (releases.traffic) that ended in the
# last minute: a gauge of now, not a counter to rate().
APP_TRAFFIC_WINDOW = timedelta(minutes=1)
# The release label of the requests HAProxy answered itself (no slot served them).
NO_RELEASE = "none"

Labels = tuple[str, ...]
# [count, sum of seconds, then each bucket's count]; counts have the first only.
Totals = list[float]


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


@dataclass(frozen=True)
class Family:
    """One figure: which rows, grouped by what, and when each row ends (after which it never
    changes). A row with no end yet is counted live at every scrape."""

    name: str
    rows: Callable[[], QuerySet[Any]]
    ended_at: str
    labels: tuple[str, ...] = ()
    bounds: Sequence[float] | None = None
    # Whether rows not yet ended count (a queued run does; a stage not yet ended has no
    # duration). Asking for them when they cannot count costs an index scan for nothing.
    counts_unended: bool = True

    @property
    def key(self) -> str:
        # Other buckets make other totals: a roll-up made with the old bounds is not added to.
        return f"{self.name}:{','.join(map(str, self.bounds))}" if self.bounds else self.name

    def totals(self, rows: QuerySet[Any]) -> dict[Labels, Totals]:
        rows = rows.order_by()
        if self.bounds is None:
            grouped = rows.values_list(*self.labels).annotate(rows=Count("pk"))
            return {tuple(map(str, row[:-1])): [row[-1]] for row in grouped}
        aggregates = _histogram_aggregates(self.bounds)
        if not self.labels:
            found = [rows.aggregate(**aggregates)]
        else:
            found = list(rows.values(*self.labels).annotate(**aggregates))
        return {
            tuple(str(row[label]) for label in self.labels): [
                row["observations"],
                row["total"].total_seconds() if row["total"] is not None else 0.0,
                *(row[f"le_{index}"] for index in range(len(self.bounds))),
            ]
            for row in found
            if row["observations"]
        }

    def ended_between(self, since: datetime, before: datetime) -> dict[Labels, Totals]:
        window = {f"{self.ended_at}__gte": since, f"{self.ended_at}__lt": before}
        return self.totals(self.rows().filter(**window))

    def not_rolled_up(self, since: datetime) -> dict[Labels, Totals]:
        recent = Q(**{f"{self.ended_at}__gte": since})
        if self.counts_unended:
            recent |= Q(**{f"{self.ended_at}__isnull": True})
        return self.totals(self.rows().filter(recent))


def _queue_latencies() -> QuerySet[Stage]:
    return Stage.objects.filter(position=0, started_at__isnull=False).annotate(
        seconds=_interval(F("started_at") - F("run__created_at"))
    )


def _stage_durations() -> QuerySet[Stage]:
    return Stage.objects.filter(started_at__isnull=False, finished_at__isnull=False).annotate(
        seconds=_interval(F("finished_at") - F("started_at"))
    )


def _deliveries() -> QuerySet[Delivery]:
    return Delivery.objects.annotate(
        result=Case(
            When(acted_at__isnull=True, then=Value("pending")),
            When(run__isnull=False, then=Value("run_started")),
            default=Value("nothing_started"),
        )
    )


RUNS = Family("runs", PipelineRun.objects.all, "finished_at", ("project_id", "status"))
QUEUE_LATENCY = Family(
    "queue_latency", _queue_latencies, "started_at", (), QUEUE_LATENCY_BUCKETS, counts_unended=False
)
STAGE_DURATIONS = Family(
    "stage_durations",
    _stage_durations,
    "finished_at",
    ("name",),
    STAGE_DURATION_BUCKETS,
    counts_unended=False,
)
BASE_LAYERS = Family(
    "base_layers",
    lambda: LayerBuild.objects.filter(role=LayerRole.BASE),
    "created_at",
    ("source",),
    counts_unended=False,
)
DEPLOYMENTS = Family("deployments", Deployment.objects.all, "finished_at", ("kind", "status"))
DELIVERIES = Family("deliveries", _deliveries, "acted_at", ("forge", "result"))
FAMILIES = (RUNS, QUEUE_LATENCY, STAGE_DURATIONS, BASE_LAYERS, DEPLOYMENTS, DELIVERIES)


@dataclass(frozen=True)
class Scrape:
    """Every family's totals at one moment: rolled up plus live."""

    totals: dict[str, dict[Labels, Totals]]

    def of(self, family: Family) -> dict[Labels, Totals]:
        return self.totals.get(family.key, {})


def metrics_scrape(*, now: datetime | None = None) -> Scrape:
    """Roll up what ended since the last roll-up (at most once a minute), then count the rest
    live: one query per family, and one for the roll-up."""
    settled_until, rolled_up = _metrics_rolled_up(now or timezone.now())
    totals: dict[str, dict[Labels, Totals]] = {}
    for family in FAMILIES:
        merged = {
            tuple(labels.split(LABEL_SEPARATOR)) if labels else (): list(values)
            for labels, values in rolled_up.get(family.key, {}).items()
        }
        for labels, values in family.not_rolled_up(settled_until).items():
            merged[labels] = _added(merged.get(labels), values)
        totals[family.key] = merged
    return Scrape(totals)


def _metrics_rolled_up(now: datetime) -> tuple[datetime, dict[str, dict[str, Totals]]]:
    until = now - SETTLE_MARGIN
    rollup = MetricsRollup.objects.filter(pk=1).first()
    if rollup is not None and rollup.settled_until + SETTLE_EVERY > until:
        return rollup.settled_until, rollup.totals
    with transaction.atomic():
        # Under the row's lock: of two scrapes at once, one rolls up, the other reads it.
        rollup, _ = MetricsRollup.objects.select_for_update().get_or_create(
            pk=1, defaults={"settled_until": EPOCH}
        )
        if rollup.settled_until + SETTLE_EVERY <= until:
            for family in FAMILIES:
                rolled = rollup.totals.setdefault(family.key, {})
                for labels, values in family.ended_between(rollup.settled_until, until).items():
                    joined = LABEL_SEPARATOR.join(labels)
                    rolled[joined] = _added(rolled.get(joined), values)
            rollup.settled_until = until
            rollup.save(update_fields=["settled_until", "totals"])
    return rollup.settled_until, rollup.totals


def _added(totals: Totals | None, more: Totals) -> Totals:
    return more if totals is None else [a + b for a, b in zip(totals, more, strict=True)]


def run_counts(scrape: Scrape) -> list[LabelledCount]:
    """How many runs each project has in each status (projects since deleted left out)."""
    counts = scrape.of(RUNS)
    slugs = dict(
        Project.objects.filter(pk__in={int(project) for project, _ in counts}).values_list(
            "pk", "slug"
        )
    )
    rows = [
        LabelledCount((slugs[int(project)], status), int(values[0]))
        for (project, status), values in counts.items()
        if int(project) in slugs
    ]
    return sorted(rows, key=lambda row: row.labels)


def run_queue_latency(scrape: Scrape) -> Histogram:
    """From a run's creation to the start of its first stage, over every run that started."""
    return _histogram(QUEUE_LATENCY, scrape.of(QUEUE_LATENCY).get(()))


def stage_durations(scrape: Scrape) -> dict[str, Histogram]:
    """How long each kind of stage ran, over every stage that started and ended."""
    return {
        name: _histogram(STAGE_DURATIONS, values)
        for (name,), values in sorted(scrape.of(STAGE_DURATIONS).items())
    }


def base_layer_counts(scrape: Scrape) -> dict[str, int]:
    """Base layers the build stage needed, by where each came from (built = a cache miss).

    App layers are built on every run by design and say nothing about the cache.
    """
    counts = dict.fromkeys(CacheSource.values, 0)
    counts.update({source: int(values[0]) for (source,), values in scrape.of(BASE_LAYERS).items()})
    return counts


def deployment_counts(scrape: Scrape) -> list[LabelledCount]:
    """How many deployments of each kind are in each status."""
    counts = scrape.of(DEPLOYMENTS)
    return sorted(
        (LabelledCount(labels, int(values[0])) for labels, values in counts.items()),
        key=lambda row: row.labels,
    )


def delivery_counts(scrape: Scrape) -> list[LabelledCount]:
    """Webhook deliveries received per forge, by what came of them: a run, nothing, or not yet
    acted on. Refused deliveries (bad signature, unknown repository) are never stored;
    deliveries pruned by retention stay counted."""
    counts = scrape.of(DELIVERIES)
    forges = sorted({forge for forge, _ in counts})
    return [
        LabelledCount((forge, outcome), int(counts.get((forge, outcome), [0])[0]))
        for forge in forges
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


def _histogram(family: Family, totals: Totals | None) -> Histogram:
    assert family.bounds is not None
    count, seconds, *buckets = totals or [0, 0.0, *([0] * len(family.bounds))]
    return Histogram(
        buckets=tuple(
            (float(bound), int(observed))
            for bound, observed in zip(family.bounds, buckets, strict=True)
        ),
        count=int(count),
        sum_seconds=float(seconds),
    )


@dataclass(frozen=True)
class AppTraffic:
    """What one release of an environment answered over the last minute, on every host."""

    project: str
    environment: str
    release: str
    requests_per_second: float
    # None without requests; the percentiles none without a timed request.
    error_ratio: float | None
    p50_seconds: float | None
    p95_seconds: float | None


def app_traffic(*, now: datetime | None = None) -> list[AppTraffic]:
    """Each environment's releases over the request samples of the last minute.

    One query, through the samples' (rolled_up, ended_at) index: a minute of samples is never
    rolled up yet, and its rows are the environments and releases serving now, not history.
    """
    until = now or timezone.now()
    groups = traffic_grouped(
        TrafficSample.objects.filter(rolled_up=False),
        by=("environment__project__slug", "environment__name", "release__number"),
        since=until - APP_TRAFFIC_WINDOW,
        until=until,
    )
    found = [
        AppTraffic(
            project=group["environment__project__slug"],
            environment=group["environment__name"],
            release=NO_RELEASE if figures.release is None else str(figures.release),
            requests_per_second=figures.requests_per_second,
            error_ratio=figures.error_rate,
            p50_seconds=None if figures.p50_ms is None else figures.p50_ms / 1000,
            p95_seconds=None if figures.p95_ms is None else figures.p95_ms / 1000,
        )
        for group, figures in groups
    ]
    return sorted(found, key=lambda one: (one.project, one.environment, one.release))


@dataclass(frozen=True)
class EnvironmentState:
    project: str
    environment: str
    stopped: bool
    auto_deploy_paused: bool


def environment_states() -> list[EnvironmentState]:
    """Whether each environment is stopped, and whether its auto-deploys are paused: one row
    per environment (what is configured, not history)."""
    rows = Environment.objects.annotate(paused=~Q(auto_deploy_paused="")).values_list(
        "project__slug", "name", "stopped", "paused"
    )
    return [
        EnvironmentState(project, name, stopped, paused)
        for project, name, stopped, paused in rows.order_by("project__slug", "name")
    ]
