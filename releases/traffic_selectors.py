"""Reads of what an environment's hosts passed to its releases (releases.traffic's samples):
charts over a span, the last few minutes, and the watch of its latest deployment.

Each read is a fixed number of queries, summed in SQL over the samples of its span through the
(environment, ended_at) index: what it returns grows with the span's steps and the releases
in it, never with the history kept.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import IntegerField, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Extract, Floor
from django.utils import timezone

from releases.models import Deployment, Environment, TrafficSample
from releases.states import WatchState
from releases.traffic_figures import BUCKET_BOUNDS_MS, COUNT_FIELDS, Figures

TRAFFIC_MINUTES_MIN = 5
TRAFFIC_MINUTES_MAX = 14 * 24 * 60
TRAFFIC_MINUTES_DEFAULT = 60
# About this many points a span: enough for a chart's line, few enough to send every 5 s.
POINTS_WANTED = 60
# Step lengths (seconds) a span is cut into: whole divisors of the longer ones, so a step never
# splits a rolled-up minute once steps are a minute or more.
STEP_LADDER = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
# "Now": the last few minutes, per release.
NOW_WINDOW = timedelta(minutes=5)
# Releases drawn each as a line of their own (the newest); older ones in the span share one.
RELEASE_LINES = 5
DEPLOYMENT_MARKS_MAX = 50


class TrafficQueryRefused(ValueError):
    """A span or host a traffic read cannot be made of; the message names which, and why."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class TrafficPoint:
    """One step of a span (from `at`, `step_seconds` long)."""

    at: datetime
    requests: int
    # None: nothing was sampled in the step (no line there), unlike 0 (sampled, no request).
    requests_per_second: float | None
    # None without requests.
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class ReleaseSeries:
    # The releases whose requests the line counts: one; the older ones of a span with more
    # than RELEASE_LINES; none for the requests HAProxy answered itself (no slot served them).
    releases: tuple[int, ...]
    points: tuple[TrafficPoint, ...]


@dataclass(frozen=True)
class TrafficNow:
    """What one release (None: HAProxy itself) answered over the last few minutes."""

    release: int | None
    requests: int
    responses_5xx: int
    requests_per_second: float
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class DeploymentMark:
    """A deployment in the span, at the moment it ended (began, while it runs)."""

    deployment: int
    at: datetime
    kind: str
    release: int
    status: str
    watch_state: str


@dataclass(frozen=True)
class EnvironmentTraffic:
    minutes: int
    host: str | None
    since: datetime
    until: datetime
    step_seconds: int
    total: tuple[TrafficPoint, ...]
    # Oldest release first; HAProxy's own answers last.
    releases: tuple[ReleaseSeries, ...]
    deployments: tuple[DeploymentMark, ...]
    now: tuple[TrafficNow, ...]
    # The release that serves (None: nothing does yet).
    serving_release: int | None
    # Whether the collector samples at all (DOCKYARD_TRAFFIC_SAMPLE_SECONDS above 0).
    sampling: bool

    @property
    def serving(self) -> TrafficNow | None:
        """The last few minutes of the release that serves (None without a request)."""
        found = next((one for one in self.now if one.release == self.serving_release), None)
        return found if found is not None and found.requests else None


def environment_traffic(
    environment: Environment,
    *,
    minutes: int = TRAFFIC_MINUTES_DEFAULT,
    host: str | None = None,
    now: datetime | None = None,
) -> EnvironmentTraffic:
    """The environment's requests over the last `minutes` in steps (in total and per release),
    the deployments in that span, and each release's last five minutes; on one host only when
    `host` names one of the environment's. Raises TrafficQueryRefused naming a bad parameter."""
    if not TRAFFIC_MINUTES_MIN <= minutes <= TRAFFIC_MINUTES_MAX:
        raise TrafficQueryRefused(
            "minutes", f"from {TRAFFIC_MINUTES_MIN} to {TRAFFIC_MINUTES_MAX}, not {minutes}"
        )
    samples = TrafficSample.objects.filter(environment=environment)
    if host:
        host_id = environment.hosts.filter(name=host).values_list("pk", flat=True).first()
        if host_id is None:
            raise TrafficQueryRefused("host", f"{environment.name} does not run on a host {host!r}")
        samples = samples.filter(host_id=host_id)
    until = now or timezone.now()
    step = traffic_step_seconds(minutes)
    steps = -(-minutes * 60 // step)
    last_start = int(until.timestamp()) // step * step
    first_start = last_start - (steps - 1) * step
    since = datetime.fromtimestamp(first_start, UTC)
    releases, total = _series(samples, since=since, until=until, step=step, steps=steps)
    return EnvironmentTraffic(
        minutes=minutes,
        host=host or None,
        since=since,
        until=until,
        step_seconds=step,
        total=total,
        releases=releases,
        deployments=_deployment_marks(environment, since=since),
        now=_now(samples, until=until),
        serving_release=serving.number if (serving := environment.current_release) else None,
        sampling=settings.DOCKYARD_TRAFFIC_SAMPLE_SECONDS > 0,
    )


def traffic_step_seconds(minutes: int) -> int:
    """The step a span of `minutes` is cut into: about POINTS_WANTED of them, never shorter
    than a sample, and whole minutes once the span reaches back to the rolled-up minutes."""
    shortest = max(minutes * 60 / POINTS_WANTED, settings.DOCKYARD_TRAFFIC_SAMPLE_SECONDS)
    if minutes >= settings.DOCKYARD_TRAFFIC_RECENT_MINUTES:
        shortest = max(shortest, 60)
    return next((step for step in STEP_LADDER if step >= shortest), STEP_LADDER[-1])


def _series(
    samples: QuerySet[TrafficSample], *, since: datetime, until: datetime, step: int, steps: int
) -> tuple[tuple[ReleaseSeries, ...], tuple[TrafficPoint, ...]]:
    """One query: the span's samples summed per step and release."""
    rows = (
        samples.filter(ended_at__gt=since, started_at__gte=since, started_at__lt=until)
        .annotate(step=Floor(Extract("started_at", "epoch", tzinfo=UTC) / Value(step)))
        .values("step", "release__number")
        .annotate(**traffic_sums(), last_ended=Max("ended_at"))
        .order_by()
    )
    first = int(since.timestamp()) // step
    by_step: dict[int, dict[int | None, Figures]] = {}
    sampled_until: dict[int, datetime] = {}
    for row in rows:
        index = int(row["step"]) - first
        if not 0 <= index < steps:
            continue
        by_step.setdefault(index, {})[row["release__number"]] = traffic_figures_of(row)
        sampled_until[index] = max(sampled_until.get(index, row["last_ended"]), row["last_ended"])
    numbers = sorted({n for found in by_step.values() for n in found if n is not None})
    own_lines = numbers[-RELEASE_LINES:]
    older = tuple(numbers[:-RELEASE_LINES])
    lines: list[tuple[tuple[int, ...], frozenset[int | None]]] = []
    if older:
        lines.append((older, frozenset(older)))
    lines += [((number,), frozenset({number})) for number in own_lines]
    if any(None in found for found in by_step.values()):
        lines.append(((), frozenset({None})))
    starts = [since + timedelta(seconds=index * step) for index in range(steps)]

    def seconds_of(index: int) -> float:
        # A step's rate is over the part of it sampled so far (the newest is still going).
        end = min(starts[index] + timedelta(seconds=step), sampled_until[index])
        return max((end - starts[index]).total_seconds(), 1.0)

    def point(index: int, releases: frozenset[int | None] | None) -> TrafficPoint:
        found = by_step.get(index)
        if found is None or (releases is not None and not releases & found.keys()):
            return _point(starts[index], None, 0)
        figures = Figures()
        for number, more in found.items():
            if releases is None or number in releases:
                figures.add(more)
        return _point(starts[index], figures, seconds_of(index))

    series = tuple(
        ReleaseSeries(releases=label, points=tuple(point(i, members) for i in range(steps)))
        for label, members in lines
    )
    return series, tuple(point(index, None) for index in range(steps))


def _point(at: datetime, figures: Figures | None, seconds: float) -> TrafficPoint:
    if figures is None:
        return TrafficPoint(at, 0, None, None, None, None)
    return TrafficPoint(
        at=at,
        requests=figures.requests,
        requests_per_second=figures.requests / seconds,
        error_rate=figures.error_rate if figures.requests else None,
        p50_ms=figures.percentile_ms(0.5),
        p95_ms=figures.percentile_ms(0.95),
    )


def _now(samples: QuerySet[TrafficSample], *, until: datetime) -> tuple[TrafficNow, ...]:
    """Each release's last NOW_WINDOW, newest release first, HAProxy's own last."""
    found = [
        figures
        for _, figures in traffic_grouped(
            samples, by=("release__number",), since=until - NOW_WINDOW, until=until
        )
    ]
    return tuple(sorted(found, key=lambda one: (one.release is None, -(one.release or 0))))


def traffic_grouped(
    samples: QuerySet[TrafficSample], *, by: tuple[str, ...], since: datetime, until: datetime
) -> list[tuple[dict[str, Any], TrafficNow]]:
    """One query: the figures of `samples` that overlap since..until, grouped by the fields
    `by` (the group's values, and its figures as of the release `release__number` names when
    `by` holds it); the rate is over the span the group's samples cover."""
    rows = (
        samples.filter(ended_at__gt=since, started_at__lt=until)
        .values(*by)
        .annotate(**traffic_sums(), first_started=Min("started_at"), last_ended=Max("ended_at"))
        .order_by()
    )
    found = []
    for row in rows:
        figures = traffic_figures_of(row)
        seconds = max((row["last_ended"] - row["first_started"]).total_seconds(), 1.0)
        group = {name: row[name] for name in by}
        now = TrafficNow(
            release=group.get("release__number"),
            requests=figures.requests,
            responses_5xx=figures.responses_5xx,
            requests_per_second=figures.requests / seconds,
            error_rate=figures.error_rate if figures.requests else None,
            p50_ms=figures.percentile_ms(0.5),
            p95_ms=figures.percentile_ms(0.95),
        )
        found.append((group, now))
    return found


def _deployment_marks(environment: Environment, *, since: datetime) -> tuple[DeploymentMark, ...]:
    rows = (
        Deployment.objects.filter(environment=environment)
        .filter(Q(finished_at__gte=since) | Q(finished_at__isnull=True, created_at__gte=since))
        .order_by("-created_at", "-id")
        .values(
            "pk", "kind", "status", "watch_state", "created_at", "finished_at", "release__number"
        )[:DEPLOYMENT_MARKS_MAX]
    )
    return tuple(
        DeploymentMark(
            deployment=row["pk"],
            at=row["finished_at"] or row["created_at"],
            kind=row["kind"],
            release=row["release__number"],
            status=row["status"],
            watch_state=row["watch_state"],
        )
        for row in reversed(rows)
    )


def deployment_figures(deployment: Deployment) -> Figures:
    """What the deployment's release answered in its environment since the deployment began
    (its first host switched after that), summed over every host, response times included:
    one query, summed by the database."""
    sums = TrafficSample.objects.filter(
        environment_id=deployment.environment_id,
        release_id=deployment.release_id,
        ended_at__gt=deployment.created_at,
    ).aggregate(**traffic_sums())
    return traffic_figures_of(sums)


def traffic_sums() -> dict[str, Any]:
    """Aggregates of a group of samples (`.values(...).annotate(**traffic_sums())`): the sums
    of their counts and of each response-time bucket, read back by traffic_figures_of."""
    sums: dict[str, Any] = {f"sum_{name}": Sum(name) for name in COUNT_FIELDS}
    for index in range(len(BUCKET_BOUNDS_MS) + 1):
        # A sample with no timed request may hold no buckets at all: its element is NULL.
        element = Cast(KeyTextTransform(str(index), "time_buckets"), IntegerField())
        sums[f"bucket_{index}"] = Coalesce(Sum(element), 0)
    return sums


def traffic_figures_of(row: Mapping[str, Any]) -> Figures:
    """The figures of a row annotated with traffic_sums."""
    return Figures(
        time_buckets=[int(row[f"bucket_{i}"]) for i in range(len(BUCKET_BOUNDS_MS) + 1)],
        **{name: int(row[f"sum_{name}"] or 0) for name in COUNT_FIELDS},
    )


@dataclass(frozen=True)
class WatchNote:
    """What the page says of a deployment's watch."""

    deployment: int
    release: int
    kind: str
    state: str
    until: datetime | None
    # While it watches: what the release answered so far.
    requests: int
    responses_5xx: int
    # When it ended: what the watch recorded.
    detail: str


def environment_watch(environment: Environment) -> WatchNote | None:
    """The watch the environment's page tells of: the latest deployment's, or the one before
    when the latest is the rollback its watch made (None when neither was watched)."""
    latest = list(
        Deployment.objects.filter(environment=environment)
        .select_related("release")
        .order_by("-created_at", "-id")[:2]
    )
    shown = next(
        (
            deployment
            for position, deployment in enumerate(latest)
            if deployment.watch_state
            and (position == 0 or deployment.watch_state == WatchState.ROLLED_BACK)
        ),
        None,
    )
    if shown is None:
        return None
    requests = responses_5xx = 0
    if shown.watch_state == WatchState.WATCHING:
        figures = deployment_figures(shown)
        requests, responses_5xx = figures.requests, figures.responses_5xx
    return WatchNote(
        deployment=shown.pk,
        release=shown.release.number,
        kind=shown.kind,
        state=shown.watch_state,
        until=shown.watch_until,
        requests=requests,
        responses_5xx=responses_5xx,
        detail=shown.watch_detail,
    )


def environment_replicas(environment: Environment) -> int:
    """Containers per host the next deployment of the serving release starts: as an operator
    scaled it, else as its dockyard.yml says (`deploy.replicas`), else one. Reads no row
    beyond the environment and its current release."""
    if environment.replicas:
        return environment.replicas
    release = environment.current_release if environment.current_release_id else None
    return int(((release.deploy_config if release else None) or {}).get("replicas") or 1)
