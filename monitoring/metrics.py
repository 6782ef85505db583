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
    base_layer_counts,
    delivery_counts,
    deployment_counts,
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
