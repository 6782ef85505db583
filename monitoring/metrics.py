"""Dockyard's Prometheus metrics: a collector that asks the database at each scrape."""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitoring.selectors import (
    Histogram,
    app_traffic,
    base_layer_counts,
    delivery_counts,
    deployment_counts,
    environment_states,
    metrics_scrape,
    run_counts,
    run_queue_latency,
    stage_durations,
)


class DockyardCollector(Collector):
    """Runs, stages, the image cache, deployments and webhook deliveries, as the database has
    them now. Counts of rows in a status are gauges: a run leaves "running" for "succeeded"."""

    def describe(self) -> list[Metric]:
        # Nothing to announce up front: registering must not touch the database.
        return []

    def collect(self) -> Iterator[Metric]:
        scrape = metrics_scrape()
        runs = GaugeMetricFamily(
            "dockyard_runs", "Pipeline runs by project and status.", labels=["project", "status"]
        )
        for row in run_counts(scrape):
            runs.add_metric(list(row.labels), row.value)
        yield runs

        latency = HistogramMetricFamily(
            "dockyard_run_queue_latency_seconds",
            "From a run's creation to the start of its first stage.",
        )
        _add_histogram(latency, [], run_queue_latency(scrape))
        yield latency

        stages = HistogramMetricFamily(
            "dockyard_stage_duration_seconds",
            "How long stages ran, by stage name.",
            labels=["stage"],
        )
        for name, histogram in sorted(stage_durations(scrape).items()):
            _add_histogram(stages, [name], histogram)
        yield stages

        layers = base_layer_counts(scrape)
        base_layers = CounterMetricFamily(
            "dockyard_base_layers",
            "Base image layers the build stage needed, by source (built is a cache miss).",
            labels=["source"],
        )
        for source, count in sorted(layers.items()):
            base_layers.add_metric([source], count)
        yield base_layers
        needed = sum(layers.values())
        if needed:
            # No layers, no ratio: an absent series, not a made-up 0 or 1.
            hits = needed - layers.get("built", 0)
            yield GaugeMetricFamily(
                "dockyard_image_cache_hit_ratio",
                "Share of base layers found in the cache (local or registry) instead of built.",
                value=hits / needed,
            )

        deployments = GaugeMetricFamily(
            "dockyard_deployments", "Deployments by kind and status.", labels=["kind", "status"]
        )
        for row in deployment_counts(scrape):
            deployments.add_metric(list(row.labels), row.value)
        yield deployments

        deliveries = GaugeMetricFamily(
            "dockyard_webhook_deliveries",
            "Webhook deliveries received, by forge and outcome (run_started, nothing_started, "
            "pending); those pruned by retention stay counted.",
            labels=["forge", "outcome"],
        )
        for row in delivery_counts(scrape):
            deliveries.add_metric(list(row.labels), row.value)
        yield deliveries

        yield from _app_traffic()
        yield from _environment_states()


def _app_traffic() -> Iterator[Metric]:
    """The apps' requests through their hosts' HAProxy over the last minute, per release."""
    labels = ["project", "environment", "release"]
    rates = GaugeMetricFamily(
        "dockyard_app_requests_per_second",
        "Requests each release answered per second over the last minute, on every host "
        '(release "none": HAProxy answered them itself).',
        labels=labels,
    )
    errors = GaugeMetricFamily(
        "dockyard_app_error_ratio",
        "Share of each release's requests answered 5xx over the last minute.",
        labels=labels,
    )
    times = GaugeMetricFamily(
        "dockyard_app_response_seconds",
        "Each release's response time over the last minute, at the 0.5 and 0.95 quantiles.",
        labels=[*labels, "quantile"],
    )
    for row in app_traffic():
        names = [row.project, row.environment, row.release]
        rates.add_metric(names, row.requests_per_second)
        # No requests, no ratio and no quantiles: absent series, not a made-up 0.
        if row.error_ratio is not None:
            errors.add_metric(names, row.error_ratio)
        for quantile, seconds in (("0.5", row.p50_seconds), ("0.95", row.p95_seconds)):
            if seconds is not None:
                times.add_metric([*names, quantile], seconds)
    yield rates
    yield errors
    yield times


def _environment_states() -> Iterator[Metric]:
    labels = ["project", "environment"]
    stopped = GaugeMetricFamily(
        "dockyard_environment_stopped",
        "1 while an operator has stopped the environment (it serves nothing).",
        labels=labels,
    )
    paused = GaugeMetricFamily(
        "dockyard_environment_auto_deploy_paused",
        "1 while pushes no longer deploy to the environment by themselves (a watch rolled a "
        "release back).",
        labels=labels,
    )
    for state in environment_states():
        stopped.add_metric([state.project, state.environment], int(state.stopped))
        paused.add_metric([state.project, state.environment], int(state.auto_deploy_paused))
    yield stopped
    yield paused


def _add_histogram(family: HistogramMetricFamily, labels: list[str], data: Histogram) -> None:
    buckets: list[tuple[str, float]] = [(_bound(le), count) for le, count in data.buckets]
    buckets.append(("+Inf", data.count))
    family.add_metric(labels, buckets, data.sum_seconds)


def _bound(seconds: float) -> str:
    # Prometheus' own spelling of bucket bounds: "1.0", "2.5".
    return repr(float(seconds))


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DockyardCollector())


def metrics_exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(REGISTRY)
