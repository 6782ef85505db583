"""/metrics: what Prometheus reads, computed from the database at each scrape."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from builds.models import LayerBuild
from monitoring.models import MetricsRollup
from monitoring.selectors import metrics_scrape
from pipelines.models import PipelineRun, Stage
from pipelines.states import STAGE_ORDER
from projects.models import Project
from releases.models import Deployment, Environment, TrafficSample
from tests.factories import (
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
    make_traffic_sample,
)
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def make_run(
    project: Project,
    number: int,
    *,
    status: str,
    queued_for: float | None = None,
    stage_seconds: dict[str, float] | None = None,
) -> PipelineRun:
    """A run created an hour ago whose first stage began `queued_for` seconds later, and whose
    stages ran for `stage_seconds`."""
    created = timezone.now() - timedelta(hours=1)
    run = PipelineRun.objects.create(
        project=project,
        number=number,
        ref="refs/heads/main",
        commit_sha=f"{number:040x}",
        trigger="webhook",
        status=status,
    )
    PipelineRun.objects.filter(pk=run.pk).update(created_at=created)
    clock = created + timedelta(seconds=queued_for or 0)
    for position, name in enumerate(STAGE_ORDER):
        stage = Stage(run=run, name=name, position=position)
        if queued_for is not None and (position == 0 or name in (stage_seconds or {})):
            stage.started_at = clock
            clock += timedelta(seconds=(stage_seconds or {}).get(name, 0))
            stage.finished_at = clock if name in (stage_seconds or {}) else None
            stage.status = "succeeded" if stage.finished_at else "running"
        stage.save()
    return run


def layer(run: PipelineRun, name: str, *, role: str, source: str) -> None:
    LayerBuild.objects.create(
        run=run,
        name=name,
        position=0 if role == "base" else 1,
        role=role,
        source=source,
        image_id="sha256:" + "0" * 64,
        duration_seconds=1.0,
        size_bytes=1,
    )


@pytest.fixture
def activity() -> dict[str, Any]:
    web, api = make_project(slug="web"), make_project(slug="api")
    fast = make_run(web, 1, status="succeeded", queued_for=0.3, stage_seconds={"checkout": 2})
    slow = make_run(
        web, 2, status="failed", queued_for=20, stage_seconds={"checkout": 4, "build": 45}
    )
    make_run(web, 3, status="queued")
    make_run(api, 1, status="running", queued_for=1.5)
    layer(fast, "base", role="base", source="built")
    layer(fast, "app", role="app", source="built")
    layer(slow, "base", role="base", source="registry")
    layer(slow, "tools", role="base", source="local")
    layer(slow, "app", role="app", source="built")

    staging = make_environment(web, "staging")
    make_succeeded_deployment(staging, make_release(web, 7))
    make_succeeded_deployment(staging, make_release(web, 8))
    Deployment.objects.create(
        environment=staging, release_id=make_release(web, 9).pk, kind="rollback", status="failed"
    )

    acted = timezone.now()
    Delivery.objects.create(
        forge="github", delivery_id="a", event="push", project=web, run=fast, acted_at=acted
    )
    Delivery.objects.create(
        forge="github", delivery_id="b", event="ping", project=web, acted_at=acted
    )
    Delivery.objects.create(forge="gitlab", delivery_id="c", event="Push Hook", project=api)
    return {"fast": fast}


def test_runs_are_counted_by_project_and_status(client: Client, activity: Any) -> None:
    samples = scrape(client)
    # One passed run, and the three that made the releases deployed to staging.
    assert sample(samples, "dockyard_runs", project="web", status="succeeded") == 4
    assert sample(samples, "dockyard_runs", project="web", status="failed") == 1
    assert sample(samples, "dockyard_runs", project="web", status="queued") == 1
    assert sample(samples, "dockyard_runs", project="api", status="running") == 1
    assert ("dockyard_runs", frozenset({("project", "api"), ("status", "failed")})) not in samples


def test_queue_latency_is_a_histogram_from_creation_to_the_first_stage(
    client: Client, activity: Any
) -> None:
    samples = scrape(client)
    name = "dockyard_run_queue_latency_seconds"
    # 0.3 s, 1.5 s and 20 s; the queued run has not started and is not counted.
    assert sample(samples, f"{name}_bucket", le="0.25") == 0
    assert sample(samples, f"{name}_bucket", le="0.5") == 1
    assert sample(samples, f"{name}_bucket", le="2.5") == 2
    assert sample(samples, f"{name}_bucket", le="10.0") == 2
    assert sample(samples, f"{name}_bucket", le="30.0") == 3
    assert sample(samples, f"{name}_bucket", le="+Inf") == 3
    assert sample(samples, f"{name}_count") == 3
    assert sample(samples, f"{name}_sum") == pytest.approx(21.8)


def test_stage_durations_are_histograms_by_stage_name(client: Client, activity: Any) -> None:
    samples = scrape(client)
    name = "dockyard_stage_duration_seconds"
    assert sample(samples, f"{name}_bucket", stage="checkout", le="2.5") == 1
    assert sample(samples, f"{name}_bucket", stage="checkout", le="5.0") == 2
    assert sample(samples, f"{name}_count", stage="checkout") == 2
    assert sample(samples, f"{name}_sum", stage="checkout") == pytest.approx(6)
    assert sample(samples, f"{name}_bucket", stage="build", le="30.0") == 0
    assert sample(samples, f"{name}_bucket", stage="build", le="60.0") == 1
    assert sample(samples, f"{name}_sum", stage="build") == pytest.approx(45)
    # A stage still running has no duration yet.
    assert ("dockyard_stage_duration_seconds_count", frozenset({("stage", "test")})) not in samples


def test_the_image_cache_hit_ratio_counts_base_layers_only(client: Client, activity: Any) -> None:
    samples = scrape(client)
    assert sample(samples, "dockyard_base_layers_total", source="built") == 1
    assert sample(samples, "dockyard_base_layers_total", source="registry") == 1
    assert sample(samples, "dockyard_base_layers_total", source="local") == 1
    assert sample(samples, "dockyard_image_cache_hit_ratio") == pytest.approx(2 / 3)


def test_deployments_are_counted_by_kind_and_status(client: Client, activity: Any) -> None:
    samples = scrape(client)
    assert sample(samples, "dockyard_deployments", kind="deploy", status="succeeded") == 2
    assert sample(samples, "dockyard_deployments", kind="rollback", status="failed") == 1


def test_webhook_deliveries_are_counted_by_outcome(client: Client, activity: Any) -> None:
    samples = scrape(client)
    deliveries = "dockyard_webhook_deliveries"
    assert sample(samples, deliveries, forge="github", outcome="run_started") == 1
    assert sample(samples, deliveries, forge="github", outcome="nothing_started") == 1
    assert sample(samples, deliveries, forge="github", outcome="pending") == 0
    assert sample(samples, deliveries, forge="gitlab", outcome="pending") == 1


def test_an_empty_database_scrapes_without_a_made_up_cache_ratio(client: Client) -> None:
    samples = scrape(client)
    assert sample(samples, "dockyard_run_queue_latency_seconds_count") == 0
    assert not any(name == "dockyard_image_cache_hit_ratio" for name, _ in samples)


def test_a_scrape_costs_the_same_few_queries_however_many_rows_there_are(
    client: Client, activity: Any, django_assert_num_queries: Any
) -> None:
    project = make_project(slug="busy")
    for number in range(1, 41):
        make_run(project, number, status="succeeded", queued_for=number, stage_seconds={"test": 3})
    staging = Environment.objects.get(name="staging")
    for seconds_ago in range(5, 60, 5):
        make_traffic_sample(
            staging,
            make_release(project, 100 + seconds_ago),
            started_at=timezone.now() - timedelta(seconds=seconds_ago),
            statuses={200: 3},
        )
    scrape(client)  # rolls the hour-old history up
    # The roll-up, then one aggregate each over what it does not hold: runs, queue latency,
    # stage durations, base layers, deployments, deliveries; the projects' names; the last
    # minute's requests, and the environments' states.
    with django_assert_num_queries(10):
        samples = scrape(client)
    assert sample(samples, "dockyard_stage_duration_seconds_count", stage="test") == 40


def test_history_rolled_up_is_counted_once_and_what_ends_later_is_added(
    client: Client, activity: Any
) -> None:
    name = "dockyard_stage_duration_seconds"
    first = scrape(client)
    assert MetricsRollup.objects.get().totals  # the hour-old stages went into the roll-up
    assert scrape(client) == first

    # A stage that ends now is counted live, on top of the roll-up...
    late = make_run(Project.objects.get(slug="web"), 4, status="running", queued_for=1)
    Stage.objects.filter(run=late, name="checkout").update(
        started_at=timezone.now() - timedelta(seconds=30), finished_at=timezone.now()
    )
    assert sample(scrape(client), f"{name}_count", stage="checkout") == 3
    # ...and, once rolled up in its turn (a scrape an hour later), still counted once.
    metrics_scrape(now=timezone.now() + timedelta(hours=1))
    assert MetricsRollup.objects.get().settled_until > timezone.now()
    rolled = scrape(client)
    assert sample(rolled, f"{name}_count", stage="checkout") == 3
    assert sample(rolled, f"{name}_sum", stage="checkout") == pytest.approx(36)


def test_deliveries_pruned_by_retention_stay_counted(client: Client, activity: Any) -> None:
    Delivery.objects.filter(delivery_id="a").update(acted_at=timezone.now() - timedelta(days=60))
    scrape(client)  # the 60-day-old delivery is rolled up
    Delivery.objects.filter(delivery_id="a").delete()

    samples = scrape(client)

    deliveries = "dockyard_webhook_deliveries"
    assert sample(samples, deliveries, forge="github", outcome="run_started") == 1


def test_with_a_token_set_a_scrape_must_bring_it(client: Client) -> None:
    with override_settings(DOCKYARD_METRICS_TOKEN="pr0metheus-t0ken"):
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer pr0metheus-t0kem"})
        assert wrong.status_code == 401
        assert wrong["WWW-Authenticate"] == 'Bearer realm="dockyard-metrics"'
        basic = client.get("/metrics", headers={"Authorization": "Basic pr0metheus-t0ken"})
        assert basic.status_code == 401
        assert scrape(client, Authorization="Bearer pr0metheus-t0ken")


@pytest.fixture
def serving() -> Environment:
    production = make_environment(make_project(slug="shop"), "production")
    old, new = make_release(production.project, 41), make_release(production.project, 42)
    now = timezone.now()
    for seconds_ago in (60, 50, 40, 30, 20, 10):
        make_traffic_sample(
            production,
            new,
            started_at=now - timedelta(seconds=seconds_ago),
            seconds=10,
            statuses={200: 95, 502: 5},
            total_ms=250,
        )
    # Draining: the old release answered its last requests, then nothing.
    make_traffic_sample(production, old, started_at=now - timedelta(seconds=40), statuses={200: 4})
    make_traffic_sample(production, old, started_at=now - timedelta(seconds=30), statuses={})
    # HAProxy's own answers, and a sample older than the minute, not counted.
    make_traffic_sample(production, None, started_at=now - timedelta(seconds=15), statuses={503: 2})
    make_traffic_sample(
        production, new, started_at=now - timedelta(minutes=3), statuses={500: 1000}
    )
    return production


def test_each_releases_last_minute_of_requests_is_a_gauge(client: Client, serving: Any) -> None:
    samples = scrape(client)
    new = {"project": "shop", "environment": "production", "release": "42"}
    assert sample(samples, "dockyard_app_requests_per_second", **new) == pytest.approx(10.0)
    assert sample(samples, "dockyard_app_error_ratio", **new) == pytest.approx(0.05)
    p50 = sample(samples, "dockyard_app_response_seconds", quantile="0.5", **new)
    p95 = sample(samples, "dockyard_app_response_seconds", quantile="0.95", **new)
    assert 0.2 < p50 <= p95 <= 0.3
    proxy = {"project": "shop", "environment": "production", "release": "none"}
    assert sample(samples, "dockyard_app_error_ratio", **proxy) == 1.0


def test_a_release_that_answered_nothing_has_a_rate_of_zero_and_no_ratio(
    client: Client, serving: Any
) -> None:
    samples = scrape(client)
    old = {"project": "shop", "environment": "production", "release": "41"}
    assert sample(samples, "dockyard_app_requests_per_second", **old) == pytest.approx(4 / 15)
    TrafficSample.objects.filter(release__number=41, requests__gt=0).delete()
    samples = scrape(client)
    assert sample(samples, "dockyard_app_requests_per_second", **old) == 0
    labels = frozenset(old.items())
    assert ("dockyard_app_error_ratio", labels) not in samples
    assert not any(
        name == "dockyard_app_response_seconds" and ("release", "41") in found
        for name, found in samples
    )


def test_stopped_environments_and_paused_auto_deploys_are_flagged(client: Client) -> None:
    project = make_project(slug="shop")
    make_environment(project, "staging")
    production = make_environment(project, "production")
    Environment.objects.filter(pk=production.pk).update(
        stopped=True, auto_deploy_paused="a watch rolled release 42 back"
    )
    samples = scrape(client)
    for name, environment, value in [
        ("dockyard_environment_stopped", "staging", 0),
        ("dockyard_environment_stopped", "production", 1),
        ("dockyard_environment_auto_deploy_paused", "staging", 0),
        ("dockyard_environment_auto_deploy_paused", "production", 1),
    ]:
        assert sample(samples, name, project="shop", environment=environment) == value
