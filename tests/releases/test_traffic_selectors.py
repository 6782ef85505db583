"""Reading an environment's traffic: steps over a span, per release, the last five minutes and
the watch the page tells of, from samples written straight into the database."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from releases.models import Deployment, Environment
from releases.traffic_selectors import (
    TrafficQueryRefused,
    environment_replicas,
    environment_traffic,
    environment_watch,
    traffic_step_seconds,
)
from tests.factories import (
    make_environment,
    make_host,
    make_project,
    make_release,
    make_succeeded_deployment,
    make_traffic_sample,
)

pytestmark = pytest.mark.django_db

# A whole hour: steps of a minute start on it.
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def production() -> Environment:
    environment = make_environment(make_project(slug="web"), "production")
    make_release(environment.project, 41)
    make_succeeded_deployment(environment, make_release(environment.project, 42), live=True)
    return Environment.objects.select_related("current_release").get(pk=environment.pk)


def release(environment: Environment, number: int) -> object:
    return environment.project.releases.get(number=number)


def test_an_hour_is_sixty_steps_of_a_minute_and_five_minutes_sixty_of_five_seconds() -> None:
    assert traffic_step_seconds(60) == 60
    assert traffic_step_seconds(5) == 5
    # Past the recent samples only rolled-up minutes are left: never a step shorter.
    assert traffic_step_seconds(40) == 60
    assert traffic_step_seconds(24 * 60) == 1800
    assert traffic_step_seconds(14 * 24 * 60) == 21600


def test_a_span_has_one_point_per_step_ending_with_the_one_under_way(
    production: Environment,
) -> None:
    traffic = environment_traffic(production, minutes=60, now=NOW + timedelta(seconds=30))
    assert traffic.step_seconds == 60
    assert len(traffic.total) == 60
    assert traffic.total[-1].at == NOW
    assert traffic.since == NOW - timedelta(minutes=59)
    # Nothing sampled: no point has a rate, rather than a made-up zero.
    assert {point.requests_per_second for point in traffic.total} == {None}
    assert traffic.releases == ()


def test_rates_errors_and_percentiles_come_per_step_in_total_and_per_release(
    production: Environment,
) -> None:
    old, new = release(production, 41), release(production, 42)
    minute = NOW - timedelta(minutes=10)
    # Rolled-up minutes: 600 requests in the minute, 60 of them 5xx.
    make_traffic_sample(
        production, old, started_at=minute, seconds=60, statuses={200: 540, 500: 60}, rolled_up=True
    )
    make_traffic_sample(
        production, new, started_at=minute, seconds=60, statuses={200: 120}, total_ms=400
    )
    traffic = environment_traffic(production, minutes=60, now=NOW)

    point = next(p for p in traffic.total if p.at == minute)
    assert point.requests == 720
    assert point.requests_per_second == pytest.approx(12.0)
    assert point.error_rate == pytest.approx(60 / 720)
    assert 30 < point.p50_ms <= 50 and 300 < point.p95_ms <= 500
    by_release = {series.releases: series for series in traffic.releases}
    assert list(by_release) == [(41,), (42,)]
    old_point = next(p for p in by_release[(41,)].points if p.at == minute)
    assert old_point.requests_per_second == pytest.approx(10.0)
    assert old_point.error_rate == pytest.approx(0.1)
    new_point = next(p for p in by_release[(42,)].points if p.at == minute)
    assert new_point.error_rate == 0.0
    assert 300 < new_point.p50_ms <= 500
    # The minute before had nothing sampled: a gap, not zero.
    before = next(p for p in traffic.total if p.at == minute - timedelta(minutes=1))
    assert before.requests_per_second is None


def test_recent_five_second_samples_add_up_in_their_step(production: Environment) -> None:
    new = release(production, 42)
    for offset in range(0, 60, 5):
        make_traffic_sample(
            production,
            new,
            started_at=NOW - timedelta(minutes=3) + timedelta(seconds=offset),
            statuses={200: 10},
        )
    traffic = environment_traffic(production, minutes=60, now=NOW)
    point = next(p for p in traffic.total if p.at == NOW - timedelta(minutes=3))
    assert point.requests == 120
    assert point.requests_per_second == pytest.approx(2.0)


def test_the_step_under_way_has_its_rate_over_the_part_sampled_so_far(
    production: Environment,
) -> None:
    make_traffic_sample(production, release(production, 42), started_at=NOW, statuses={200: 50})
    traffic = environment_traffic(production, minutes=60, now=NOW + timedelta(seconds=7))
    assert traffic.total[-1].requests_per_second == pytest.approx(10.0)


def test_haproxys_own_answers_count_in_the_total_and_have_a_line_of_their_own(
    production: Environment,
) -> None:
    make_traffic_sample(
        production, None, started_at=NOW - timedelta(minutes=2), seconds=60, statuses={503: 30}
    )
    traffic = environment_traffic(production, minutes=60, now=NOW)
    assert [series.releases for series in traffic.releases] == [()]
    point = next(p for p in traffic.total if p.at == NOW - timedelta(minutes=2))
    assert point.error_rate == 1.0


def test_past_five_releases_the_older_ones_share_a_line(production: Environment) -> None:
    for number in range(1, 9):
        make_traffic_sample(
            production,
            make_release(production.project, 100 + number),
            started_at=NOW - timedelta(minutes=number),
            statuses={200: number},
        )
    traffic = environment_traffic(production, minutes=60, now=NOW)
    assert [series.releases for series in traffic.releases] == [
        (101, 102, 103),
        (104,),
        (105,),
        (106,),
        (107,),
        (108,),
    ]
    assert sum(p.requests for p in traffic.releases[0].points) == 1 + 2 + 3


def test_one_hosts_traffic_leaves_the_others_out_and_an_unknown_host_is_refused(
    production: Environment,
) -> None:
    east = make_host("east", "127.0.0.2")
    production.hosts.add(east)
    new = release(production, 42)
    at = NOW - timedelta(minutes=1)
    make_traffic_sample(production, new, started_at=at, statuses={200: 5})
    make_traffic_sample(production, new, started_at=at, statuses={200: 7}, host=east)
    both = environment_traffic(production, minutes=60, now=NOW)
    only_east = environment_traffic(production, minutes=60, host="east", now=NOW)
    assert sum(p.requests for p in both.total) == 12
    assert sum(p.requests for p in only_east.total) == 7
    with pytest.raises(TrafficQueryRefused, match="does not run on a host 'west'") as refused:
        environment_traffic(production, host="west")
    assert refused.value.parameter == "host"


@pytest.mark.parametrize("minutes", [0, 4, 14 * 24 * 60 + 1])
def test_a_span_outside_five_minutes_to_two_weeks_is_refused(
    production: Environment, minutes: int
) -> None:
    with pytest.raises(TrafficQueryRefused, match="from 5 to 20160") as refused:
        environment_traffic(production, minutes=minutes)
    assert refused.value.parameter == "minutes"


def test_samples_outside_the_span_are_left_out(production: Environment) -> None:
    new = release(production, 42)
    make_traffic_sample(production, new, started_at=NOW - timedelta(hours=2), statuses={200: 9})
    make_traffic_sample(production, new, started_at=NOW + timedelta(minutes=1), statuses={200: 9})
    traffic = environment_traffic(production, minutes=60, now=NOW)
    assert sum(p.requests for p in traffic.total) == 0


def test_now_sums_each_releases_last_five_minutes_and_names_the_serving_one(
    production: Environment,
) -> None:
    old, new = release(production, 41), release(production, 42)
    for minutes_ago in (1, 2, 3, 4):
        make_traffic_sample(
            production,
            new,
            started_at=NOW - timedelta(minutes=minutes_ago),
            seconds=60,
            statuses={200: 57, 500: 3},
            total_ms=120,
        )
    make_traffic_sample(
        production, old, started_at=NOW - timedelta(minutes=30), seconds=60, statuses={200: 99}
    )
    traffic = environment_traffic(production, minutes=60, now=NOW)
    assert [one.release for one in traffic.now] == [42]
    serving = traffic.serving
    assert serving is not None and serving.release == 42
    assert (serving.requests, serving.responses_5xx) == (240, 12)
    assert serving.requests_per_second == pytest.approx(1.0)
    assert serving.error_rate == pytest.approx(0.05)
    assert 100 < serving.p95_ms <= 150


def test_a_serving_release_that_answered_nothing_has_no_summary(production: Environment) -> None:
    make_traffic_sample(production, release(production, 42), started_at=NOW - timedelta(minutes=1))
    traffic = environment_traffic(production, minutes=60, now=NOW)
    assert traffic.now[0].requests == 0
    assert traffic.serving is None


def test_deployments_in_the_span_are_marked_oldest_first_at_the_moment_they_ended(
    production: Environment,
) -> None:
    now = datetime.now(UTC)
    old, new = release(production, 41), release(production, 42)
    long_ago = Deployment.objects.create(
        environment=production, release=old, kind="deploy", status="succeeded"
    )
    Deployment.objects.filter(pk=long_ago.pk).update(finished_at=now - timedelta(hours=3))
    Deployment.objects.filter(kind="deploy").exclude(pk=long_ago.pk).update(
        finished_at=now - timedelta(minutes=20)
    )
    Deployment.objects.create(
        environment=production,
        release=new,
        kind="restart",
        status="rolling",
        watch_state="",
    )
    traffic = environment_traffic(production, minutes=60, now=now)
    assert [(m.kind, m.release, m.status) for m in traffic.deployments] == [
        ("deploy", 42, "succeeded"),
        ("restart", 42, "rolling"),
    ]
    assert traffic.deployments[0].at == now - timedelta(minutes=20)


def test_the_number_of_queries_does_not_grow_with_the_samples(production: Environment) -> None:
    new = release(production, 42)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            environment_traffic(production, minutes=60, host="local", now=NOW)
        return len(captured)

    make_traffic_sample(production, new, started_at=NOW - timedelta(minutes=1))
    few = queries()
    for minutes_ago in range(2, 50):
        make_traffic_sample(
            production,
            make_release(production.project, 100 + minutes_ago),
            started_at=NOW - timedelta(minutes=minutes_ago),
            statuses={200: 1},
        )
    assert queries() == few <= 4


@override_settings(DOCKYARD_TRAFFIC_SAMPLE_SECONDS=0)
def test_without_a_collector_the_read_says_nothing_is_sampled(production: Environment) -> None:
    assert environment_traffic(production, now=NOW).sampling is False


def test_the_watch_shown_is_the_latest_deployments_with_the_requests_so_far(
    production: Environment,
) -> None:
    new = release(production, 42)
    watched = Deployment.objects.get(release=new)
    until = datetime.now(UTC) + timedelta(minutes=2)
    Deployment.objects.filter(pk=watched.pk).update(watch_state="watching", watch_until=until)
    make_traffic_sample(production, new, started_at=datetime.now(UTC), statuses={200: 117, 502: 3})
    note = environment_watch(production)
    assert note is not None
    assert (note.deployment, note.release, note.state, note.until) == (
        watched.pk,
        42,
        "watching",
        until,
    )
    assert (note.requests, note.responses_5xx) == (120, 3)


def test_after_a_watch_rolled_back_the_page_still_tells_why(production: Environment) -> None:
    new = release(production, 42)
    watched = Deployment.objects.get(release=new)
    Deployment.objects.filter(pk=watched.pk).update(
        watch_state="rolled_back", watch_detail="60 of 100 requests answered 5xx"
    )
    Deployment.objects.create(
        environment=production, release=release(production, 41), kind="rollback", status="queued"
    )
    note = environment_watch(production)
    assert note is not None and note.state == "rolled_back"
    assert note.detail == "60 of 100 requests answered 5xx"


def test_a_watch_that_passed_before_another_deployment_is_not_told(
    production: Environment,
) -> None:
    Deployment.objects.update(watch_state="passed", watch_detail="0 of 80 requests answered 5xx")
    make_succeeded_deployment(production, release(production, 41))
    assert environment_watch(production) is None


def test_replicas_come_from_the_operator_then_the_release_then_one(
    production: Environment,
) -> None:
    assert environment_replicas(production) == 1
    production.current_release.deploy_config = {"replicas": 3}
    assert environment_replicas(production) == 3
    production.replicas = 2
    assert environment_replicas(production) == 2
