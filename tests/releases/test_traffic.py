"""Request metrics and release watches, decided on samples: what the collector counts from a
proxy's request log, how samples fold into minutes, and what a watch decides. The proxy is the
in-memory stand-in here; tests/releases/test_operate_and_watch.py reads the real HAProxy."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from infrastructure.haproxy import (
    ProxiedRequest,
    ProxyBackend,
    ProxyServer,
    proxied_requests,
    render_config,
    servers_added_only,
)
from operations.housekeeping import Housekeeper
from projects.spec import WatchSpec
from releases.models import Deployment, HostDeployment, TrafficSample
from releases.services import deployment_request
from releases.states import DeploymentKind, HostStatus, WatchState
from releases.traffic import traffic_collect, traffic_roll_up
from releases.traffic_figures import Figures
from releases.watch import watch_verdict, watches_judge
from tests.factories import (
    make_environment,
    make_project,
    make_release,
    make_succeeded_deployment,
    make_traffic_sample,
)
from tests.fakes import FakeProxy, fake_deploy_tools

AT = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def test_the_request_log_gives_each_request_and_skips_haproxys_other_lines() -> None:
    lines = [
        (AT, "dockyard-request be_7 blue 200 12"),
        (AT, "[WARNING]  (8) : Server be_7/green is going DOWN for maintenance."),
        (AT, "dockyard-request be_7 <NOSRV> 503 0"),
        (AT, "dockyard-request be_7 green-2 -1 -1"),
        (AT, "dockyard-request be_7 blue twohundred 12"),
    ]
    assert proxied_requests(lines) == [
        ProxiedRequest(at=AT, backend="be_7", server="blue", status=200, total_ms=12),
        ProxiedRequest(at=AT, backend="be_7", server="", status=503, total_ms=0),
        ProxiedRequest(at=AT, backend="be_7", server="green-2", status=-1, total_ms=-1),
    ]


def test_haproxy_logs_every_request_with_its_server_status_and_timer() -> None:
    config = render_config([], admin_socket=Path("/s"))
    assert "log stdout format raw local0 info" in config
    assert 'log-format "dockyard-request %b %s %ST %Ta"' in config


def test_percentiles_come_from_the_buckets_and_error_rate_counts_5xx_only() -> None:
    figures = Figures()
    for total_ms in [4] * 90 + [400] * 10:
        figures.count(200, total_ms)
    figures.count(502, 10)
    figures.count(-1, -1)
    assert figures.requests == 102 and figures.responses_5xx == 1 and figures.responses_other == 1
    assert figures.error_rate == pytest.approx(1 / 102)
    p50, p95 = figures.percentile_ms(0.5), figures.percentile_ms(0.95)
    assert p50 is not None and 3 < p50 <= 5
    assert p95 is not None and 300 < p95 <= 500
    assert Figures().percentile_ms(0.5) is None


def test_only_added_servers_are_left_to_the_runtime_api() -> None:
    def config(*replicas: int) -> str:
        servers = tuple(
            ProxyServer(name=name, address="127.0.0.2", port=port, enabled=False)
            for name, port in zip(["blue", "blue-2", "blue-3"], replicas, strict=False)
        )
        return render_config(
            [ProxyBackend("be_1", "127.0.0.2", 9100, servers)], admin_socket=Path("/s")
        )

    assert servers_added_only(config(9201), config(9201, 9202, 9203))
    assert not servers_added_only(config(9201, 9202), config(9201))
    assert not servers_added_only(config(9201), config(9201))
    other_frontend = config(9201).replace("9100", "9101")
    assert not servers_added_only(config(9201), other_frontend + "    server x 1.2.3.4:5\n")


@pytest.mark.django_db
def test_the_collector_counts_each_request_once_by_slot_and_release() -> None:
    project = make_project()
    environment = make_environment(project, "staging")
    [host] = environment.hosts.all()
    one, two = make_release(project, 1), make_release(project, 2)
    for release, slot in ((one, "blue"), (two, "green")):
        deployment = make_succeeded_deployment(environment, release, live=release == two)
        Deployment.objects.filter(pk=deployment.pk).update(slot=slot)
        HostDeployment.objects.create(
            deployment=deployment, host=host, position=0, batch=0, status=HostStatus.FINISHED
        )
    environment.refresh_from_db()
    environment.live_slot = "green"
    environment.save(update_fields=["live_slot"])
    now = timezone.now()
    backend = environment.proxy_backend
    proxy = FakeProxy(
        logged=[
            ProxiedRequest(now - timedelta(seconds=3), backend, "blue", 200, 5),
            ProxiedRequest(now - timedelta(seconds=2), backend, "green", 500, 9),
            ProxiedRequest(now - timedelta(seconds=2), backend, "green-2", 200, 7),
            ProxiedRequest(now - timedelta(seconds=1), "be_elsewhere", "blue", 200, 1),
        ]
    )

    traffic_collect(fake_deploy_tools(proxy=proxy), now=now)
    traffic_collect(fake_deploy_tools(proxy=proxy), now=now + timedelta(seconds=5))

    counted = {
        (sample.release.number, sample.slot): (sample.requests, sample.responses_5xx)
        for sample in TrafficSample.objects.filter(environment=environment, requests__gt=0)
    }
    assert counted == {(1, "blue"): (1, 0), (2, "green"): (2, 1)}
    # The live slot gets a sample on every read, with nothing in it when nothing came.
    assert TrafficSample.objects.filter(environment=environment, slot="green").count() == 2


@pytest.mark.django_db
def test_samples_older_than_the_ring_fold_into_minutes_and_minutes_past_retention_go(
    settings: object,
) -> None:
    project = make_project()
    environment = make_environment(project, "staging")
    release = make_release(project, 1)
    now = timezone.now().replace(second=30, microsecond=0)
    old = now - timedelta(minutes=45)
    for offset in (0, 5, 10):
        make_traffic_sample(
            environment,
            release,
            started_at=old.replace(second=offset),
            statuses={200: 3, 500: 1},
        )
    make_traffic_sample(environment, release, started_at=now - timedelta(seconds=10))
    make_traffic_sample(
        environment, release, started_at=now - timedelta(days=20), rolled_up=True, seconds=60
    )

    assert traffic_roll_up(now=now) == 3

    minute = TrafficSample.objects.get(environment=environment, rolled_up=True)
    assert (minute.requests, minute.responses_5xx) == (12, 3)
    assert minute.started_at == old.replace(second=0)
    assert sum(minute.time_buckets) == 12
    assert TrafficSample.objects.filter(environment=environment, rolled_up=False).count() == 1


def test_a_watch_judges_only_with_enough_requests_and_names_the_numbers() -> None:
    spec = WatchSpec(seconds=60, max_error_rate=0.05, min_requests=50)
    assert watch_verdict(Figures(requests=40, responses_5xx=40), spec) == ""
    assert watch_verdict(Figures(requests=100, responses_5xx=5), spec) == ""
    assert watch_verdict(Figures(requests=100, responses_5xx=21), spec) == (
        "21 of 100 requests answered 5xx (21.0%, more than the 5.0% allowed)"
    )


@pytest.mark.django_db
def test_a_watch_whose_window_passed_with_too_few_requests_passes_and_says_so() -> None:
    project = make_project()
    environment = make_environment(project, "staging")
    one, two = make_release(project, 1), make_release(project, 2)
    make_succeeded_deployment(environment, one, live=True)
    Deployment.objects.filter(release=one).update(created_at=timezone.now() - timedelta(minutes=5))
    watched = make_succeeded_deployment(environment, two, live=True)
    Deployment.objects.filter(pk=watched.pk).update(
        previous_release=one,
        watch_state=WatchState.WATCHING,
        watch_until=timezone.now() - timedelta(seconds=1),
    )
    two.deploy_config = {"port": 80, "watch": WatchSpec().as_dict(), "environments": []}
    two.save(update_fields=["deploy_config"])
    make_traffic_sample(environment, two, started_at=timezone.now(), statuses={500: 10})

    assert watches_judge() == [
        f"deployment {watched.pk}: passed its watch: 10 of 10 requests answered 5xx "
        "(fewer than the 50 needed to judge)"
    ]
    watched.refresh_from_db()
    assert watched.watch_state == WatchState.PASSED
    assert not Deployment.objects.filter(kind=DeploymentKind.ROLLBACK).exists()


@pytest.mark.django_db
def test_a_new_deployment_ends_the_watch_of_the_one_before() -> None:
    project = make_project()
    environment = make_environment(project, "staging")
    one, two = make_release(project, 1), make_release(project, 2)
    watched = make_succeeded_deployment(environment, one, live=True)
    Deployment.objects.filter(pk=watched.pk).update(watch_state=WatchState.WATCHING)

    deployment_request(environment=environment, release=two)

    watched.refresh_from_db()
    assert watched.watch_state == WatchState.SUPERSEDED
    assert watched.watch_detail.endswith("(deploy of release 2) began")


@pytest.mark.django_db
def test_a_deploy_worker_samples_request_metrics_every_few_seconds(settings: object) -> None:
    settings.DOCKYARD_TRAFFIC_SAMPLE_SECONDS = 2  # type: ignore[attr-defined]
    settings.DOCKYARD_REAP_INTERVAL_SECONDS = 15  # type: ignore[attr-defined]
    deployer, builder = Housekeeper(roles=("deploy",)), Housekeeper(roles=("build",))
    assert "sample request metrics" in [chore.name for chore in deployer.chores]
    assert "sample request metrics" not in [chore.name for chore in builder.chores]
    assert deployer._tick() == 2


@pytest.mark.django_db
def test_log_lines_a_proxy_dropped_are_reported_once_as_requests_not_counted() -> None:
    environment = make_environment(make_project(), "staging")
    make_succeeded_deployment(environment, make_release(environment.project, 1), live=True)
    proxy = FakeProxy(dropped=3)

    first = traffic_collect(fake_deploy_tools(proxy=proxy))
    again = traffic_collect(fake_deploy_tools(proxy=proxy))
    proxy.dropped = 5
    more = traffic_collect(fake_deploy_tools(proxy=proxy))

    assert [problem for problem in first.problems if "dropped 3 request log line" in problem]
    assert "not counted" in first.problems[0]
    assert again.problems == []
    assert [problem for problem in more.problems if "dropped 2 request log line" in problem]
