"""Request metrics: what each host's HAProxy passed to each environment's releases.

A deploy worker's housekeeper reads every host's request log every few seconds (HAProxy logs
each request: backend, server, status, Ta) from where the last read ended, and counts it per
environment, slot and release into a TrafficSample per host: a ring of recent samples, rolled
up per minute once older than DOCKYARD_TRAFFIC_RECENT_MINUTES, the minutes pruned after
DOCKYARD_TRAFFIC_RETENTION_DAYS. Nothing is read twice or skipped: each host's reads begin
where its last sample ended (a host that could not be read is read from there next time).
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from infrastructure.docker_engine import DockerEngineError
from infrastructure.haproxy import ProxiedRequest, ProxyError
from releases.models import Environment, Host, HostDeployment, TrafficSample
from releases.proxy import host_proxy
from releases.states import HostStatus, Slot
from releases.tools import DeployTools
from releases.traffic_figures import COUNT_FIELDS, Figures, slot_of_server

logger = logging.getLogger(__name__)

# A host's first read goes back this far; a read after a gap (no deploy worker for a while,
# the host unreachable) goes back to where the host's last one ended, but at most LONGEST_GAP.
FIRST_READ = timedelta(minutes=1)
LONGEST_GAP = timedelta(minutes=15)
# Reads end this long before now: the engine stamps a line as it takes it in, then writes it
# to the log, and a line stamped before the end of one read but written after it would be
# missed by that read and skipped by the next, which begins at that end.
SETTLED = timedelta(seconds=1)
# Host id -> the count of log lines its proxy dropped, as this process last read it.
_DROPPED_SEEN: dict[int, int] = {}
# Host steps after which a slot's container has taken traffic.
_SERVED = (
    HostStatus.SWITCHING,
    HostStatus.DRAINING,
    HostStatus.SWITCHED,
    HostStatus.FINISHED,
    HostStatus.REVERTED,
)


@dataclass
class TrafficReport:
    requests: int = 0
    hosts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.requests} request(s) from {', '.join(self.hosts) or 'no host'}"
        return text + (f"; problems: {'; '.join(self.problems)}" if self.problems else "")


def traffic_collect(tools: DeployTools, *, now: datetime | None = None) -> TrafficReport:
    """Read every host's request log since its last sample into new samples (one per
    environment, slot and release; a zero one for each live slot that served nothing)."""
    report = TrafficReport()
    deployed = Environment.objects.exclude(live_slot="")
    for host in Host.objects.filter(environments__in=deployed).distinct().order_by("name"):
        until = (now or timezone.now()) - SETTLED
        since = _read_from(host, until)
        try:
            with host_proxy(host, tools) as (_, proxy):
                requests = proxy.requests_since(since, until)
                dropped = proxy.log_lines_dropped()
        except (ProxyError, DockerEngineError) as error:
            report.problems.append(f"{host.name}: {error}")
            continue
        if lost := _newly_dropped(host, dropped):
            report.problems.append(
                f"{host.name}: its HAProxy dropped {lost} request log line(s) (the engine did "
                "not take its output in fast enough): those requests are not counted"
            )
        samples_record(host=host, since=since, until=until, requests=requests)
        report.requests += len(requests)
        report.hosts.append(host.name)
    return report


def samples_record(
    *, host: Host, since: datetime, until: datetime, requests: list[ProxiedRequest]
) -> list[TrafficSample]:
    """Count `requests` (read from `host`'s proxy for since..until) into samples."""
    environments = {
        environment.proxy_backend: environment
        for environment in Environment.objects.filter(hosts=host).exclude(live_slot="")
    }
    counted: dict[tuple[str, str], Figures] = defaultdict(Figures)
    for environment in environments.values():
        if not environment.stopped:
            counted[(environment.proxy_backend, environment.live_slot)] = Figures()
    for request in requests:
        if request.backend in environments:
            slot = slot_of_server(request.server) if request.server else ""
            counted[(request.backend, slot)].count(request.status, request.total_ms)
    releases = {
        environment.proxy_backend: _slot_releases(environment, host)
        for environment in environments.values()
    }
    samples = [
        TrafficSample(
            environment=environments[backend],
            host=host,
            release_id=releases[backend].get(slot),
            slot=slot,
            started_at=since,
            ended_at=until,
            time_buckets=figures.time_buckets,
            **{name: getattr(figures, name) for name in COUNT_FIELDS},
        )
        for (backend, slot), figures in counted.items()
    ]
    if not samples:
        # Nothing deployed answers here any more; the host's reads still move on.
        return []
    return TrafficSample.objects.bulk_create(samples)


def _newly_dropped(host: Host, dropped: int) -> int:
    """How many of the `dropped` log lines `host`'s proxy counts this collector has not told
    of yet (a proxy restarted or reloaded counts from 0 again)."""
    seen = _DROPPED_SEEN.get(host.pk, 0)
    _DROPPED_SEEN[host.pk] = dropped
    return dropped - seen if dropped >= seen else dropped


def _read_from(host: Host, until: datetime) -> datetime:
    last = TrafficSample.objects.filter(host=host).aggregate(last=Max("ended_at"))["last"]
    if last is None:
        return until - FIRST_READ
    return max(last, until - LONGEST_GAP)


def _slot_releases(environment: Environment, host: Host) -> dict[str, int]:
    """Slot -> the release whose container served in it on `host` last."""
    found: dict[str, int] = {}
    served = (
        HostDeployment.objects.filter(
            deployment__environment=environment, host=host, status__in=_SERVED
        )
        .order_by("-id")
        .values_list("deployment__slot", "deployment__release_id")
    )
    for slot, release_id in served[:20]:
        found.setdefault(slot, release_id)
        if len(found) == len(Slot.values):
            break
    return found


def traffic_roll_up(*, now: datetime | None = None) -> int:
    """Fold the recent samples older than the ring into one sample per minute (per
    environment, host, release and slot), and drop minutes past retention; how many samples
    were folded."""
    now = now or timezone.now()
    horizon = now - timedelta(minutes=settings.DOCKYARD_TRAFFIC_RECENT_MINUTES)
    # Whole minutes only: a minute still being sampled is folded once it is over.
    horizon = horizon.replace(second=0, microsecond=0)
    with transaction.atomic():
        old = TrafficSample.objects.select_for_update().filter(
            rolled_up=False, ended_at__lte=horizon
        )
        minutes: dict[tuple[int, int, int | None, str, datetime], Figures] = defaultdict(Figures)
        folded = []
        for sample in old.order_by("pk"):
            minute = sample.started_at.replace(second=0, microsecond=0)
            key = (sample.environment_id, sample.host_id, sample.release_id, sample.slot, minute)
            minutes[key].add(_figures(sample))
            folded.append(sample.pk)
        TrafficSample.objects.bulk_create(
            TrafficSample(
                environment_id=environment_id,
                host_id=host_id,
                release_id=release_id,
                slot=slot,
                rolled_up=True,
                started_at=minute,
                ended_at=minute + timedelta(minutes=1),
                time_buckets=figures.time_buckets,
                **{name: getattr(figures, name) for name in COUNT_FIELDS},
            )
            for (environment_id, host_id, release_id, slot, minute), figures in minutes.items()
        )
        TrafficSample.objects.filter(pk__in=folded).delete()
    expired = now - timedelta(days=settings.DOCKYARD_TRAFFIC_RETENTION_DAYS)
    TrafficSample.objects.filter(rolled_up=True, ended_at__lt=expired).delete()
    return len(folded)


def _figures(sample: TrafficSample) -> Figures:
    return Figures(
        time_buckets=list(sample.time_buckets) or Figures().time_buckets,
        **{name: getattr(sample, name) for name in COUNT_FIELDS},
    )


def traffic_pass(tools: DeployTools) -> str:
    """The housekeeper's chore: read, fold, judge the watches."""
    # Imported here: the watch rolls back through releases.services.
    from releases.watch import watches_judge

    report = traffic_collect(tools)
    folded = traffic_roll_up()
    verdicts = watches_judge()
    if report.problems:
        logger.warning("request metrics: %s", report)
    parts = [str(report)] if report.requests or report.problems else []
    if folded:
        parts.append(f"folded {folded} sample(s) into minutes")
    return "; ".join(parts + verdicts)
