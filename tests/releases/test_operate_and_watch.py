"""What is deployed, watched and operated through the real HAProxy and engine: request metrics
read from each host's proxy, a rolling restart, stop and start, and a release that rolls itself
back when it starts failing."""

import time
from pathlib import Path

import docker
import pytest
import requests
from django.db.models import Sum

from releases.models import Deployment, Environment, TrafficSample
from releases.services import (
    DeploymentRefused,
    environment_operate,
    environment_promote,
    environment_scale,
)
from releases.states import DeploymentKind, DeploymentStatus, WatchState
from releases.tools import deploy_tools
from releases.traffic import traffic_pass
from releases.traffic_figures import COUNT_FIELDS, Figures
from tests.factories import WEB_APP_SPEC
from tests.load import LoadGenerator
from tests.releases.deployed_app import App, address, served, wait_for_deployment

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]

WATCHED_SPEC = WEB_APP_SPEC.replace(
    "    staging: {auto: true, branches: [main]}",
    "    staging: {auto: true, branches: [main],"
    " watch: {seconds: 10, max_error_rate: 0.05, min_requests: 50}}",
)


def figures_of(environment: Environment, release_number: int) -> Figures:
    sums = TrafficSample.objects.filter(
        environment=environment, release__number=release_number
    ).aggregate(**{name: Sum(name) for name in COUNT_FIELDS})
    figures = Figures(**{name: sums[name] or 0 for name in COUNT_FIELDS})
    for buckets in TrafficSample.objects.filter(
        environment=environment, release__number=release_number
    ).values_list("time_buckets", flat=True):
        figures.add(Figures(time_buckets=buckets))
    return figures


def sampled_until(environment: Environment, release_number: int, requests: int) -> Figures:
    """Run the collector's pass until it has counted `requests` for the release."""
    deadline = time.monotonic() + 30
    while True:
        traffic_pass(deploy_tools())
        figures = figures_of(environment, release_number)
        if figures.requests >= requests or time.monotonic() > deadline:
            return figures
        time.sleep(0.3)


def app_containers(docker_client: docker.DockerClient, app: App) -> list[str]:
    """The ids of the app's running containers (other tests' apps may share the engine)."""
    labels = ["dockyard.role=app", f"dockyard.project={app.project.slug}"]
    return [c.id for c in docker_client.containers.list(filters={"label": labels})]


def get(environment: Environment, path: str) -> int:
    return requests.get(environment.frontend_url.rstrip("/") + path, timeout=5).status_code


def test_the_metrics_count_each_request_sent_with_the_status_the_app_answered(app: App) -> None:
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")
    traffic_pass(deploy_tools())  # the host's reads begin here

    statuses = [get(staging, "/") for _ in range(30)]
    statuses += [get(staging, "/cgi-bin/work?fail") for _ in range(10)]
    statuses += [get(staging, "/missing") for _ in range(5)]
    assert statuses.count(200) == 30 and statuses.count(500) == 10 and statuses.count(404) == 5

    figures = sampled_until(staging, 1, 45)
    assert (figures.requests, figures.responses_2xx) == (45, 30)
    assert (figures.responses_4xx, figures.responses_5xx) == (5, 10)
    assert figures.error_rate == pytest.approx(10 / 45)
    p50, p95 = figures.percentile_ms(0.5), figures.percentile_ms(0.95)
    assert p50 is not None and p95 is not None and 0 <= p50 <= p95 < 5000
    # Read again: nothing is counted twice.
    traffic_pass(deploy_tools())
    assert figures_of(staging, 1).requests == 45


def test_a_rolling_restart_under_load_fails_no_request_and_runs_fresh_containers(
    app: App, docker_client: docker.DockerClient
) -> None:
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")
    before = set(app_containers(docker_client, app))

    with LoadGenerator(staging.frontend_port, address=address(staging)) as load:
        time.sleep(0.3)
        restart = wait_for_deployment(
            environment_operate(environment=staging, kind=DeploymentKind.RESTART)
        )
        time.sleep(0.3)

    assert restart.status == DeploymentStatus.SUCCEEDED, restart.failure_reason
    assert load.result.failures == [] and load.result.requests > 20
    assert load.result.bodies == {"v1"}
    running = set(app_containers(docker_client, app))
    assert running and not running & before
    staging.refresh_from_db()
    assert staging.current_release.number == 1
    assert restart.kind == "restart" and restart.release.number == 1


def test_scaled_to_three_replicas_the_requests_spread_over_them_with_none_failed(
    app: App, docker_client: docker.DockerClient
) -> None:
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")

    with LoadGenerator(staging.frontend_port, address=address(staging)) as load:
        time.sleep(0.3)
        scaled = wait_for_deployment(environment_scale(environment=staging, replicas=3))
        time.sleep(0.3)
    assert scaled.status == DeploymentStatus.SUCCEEDED, scaled.failure_reason
    assert load.result.failures == [] and load.result.bodies == {"v1"}
    assert len(app_containers(docker_client, app)) == 3
    answered = [
        requests.get(staging.frontend_url + "cgi-bin/work", timeout=5).text.split()[-1]
        for _ in range(30)
    ]
    assert set(answered) == {"replica=1", "replica=2", "replica=3"}

    # Back to one: the others stop, and what serves is one container again.
    one = wait_for_deployment(environment_scale(environment=staging, replicas=1))
    assert one.status == DeploymentStatus.SUCCEEDED, one.failure_reason
    assert len(app_containers(docker_client, app)) == 1
    assert {
        requests.get(staging.frontend_url + "cgi-bin/work", timeout=5).text.split()[-1]
        for _ in range(10)
    } == {"replica=1"}


def test_a_stopped_environment_serves_nothing_until_it_is_started_again(
    app: App, docker_client: docker.DockerClient
) -> None:
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")

    stop = wait_for_deployment(environment_operate(environment=staging, kind=DeploymentKind.STOP))
    assert stop.status == DeploymentStatus.SUCCEEDED, stop.failure_reason
    assert get(staging, "/") == 503
    assert app_containers(docker_client, app) == []
    staging.refresh_from_db()
    assert staging.stopped
    with pytest.raises(DeploymentRefused, match="is stopped; start it first"):
        environment_operate(environment=staging, kind=DeploymentKind.RESTART)
    # A push does not wake it either.
    app.release("v2")
    assert not Deployment.objects.filter(environment=staging, release__number=2).exists()

    start = wait_for_deployment(environment_operate(environment=staging, kind=DeploymentKind.START))
    assert start.status == DeploymentStatus.SUCCEEDED, start.failure_reason
    assert served(staging) == "v1"
    staging.refresh_from_db()
    assert not staging.stopped
    with pytest.raises(DeploymentRefused, match="is running; restart it instead"):
        environment_operate(environment=staging, kind=DeploymentKind.START)


def test_a_release_failing_a_fifth_of_its_requests_rolls_itself_back_and_pauses_auto_deploys(
    app: App, tmp_path: Path
) -> None:
    app.repo.write("dockyard.yml", WATCHED_SPEC)
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")
    traffic_pass(deploy_tools())
    bad = app.auto_deployment(app.release("v2", error_percent=20))
    assert bad.status == DeploymentStatus.SUCCEEDED and bad.watch_state == WatchState.WATCHING
    assert served(staging) == "v2"  # its health check passed

    rollback = None
    with LoadGenerator(
        staging.frontend_port, address=address(staging), path="/cgi-bin/work", max_requests=400
    ):
        deadline = time.monotonic() + 30
        while rollback is None and time.monotonic() < deadline:
            traffic_pass(deploy_tools())
            rollback = Deployment.objects.filter(
                environment=staging, kind=DeploymentKind.ROLLBACK
            ).first()
            time.sleep(0.5)
    assert rollback is not None, "the watch did not roll the release back"
    rollback = wait_for_deployment(rollback)
    assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.failure_reason
    assert served(staging) == "v1"
    bad.refresh_from_db()
    assert bad.watch_state == WatchState.ROLLED_BACK
    assert "requests answered 5xx" in bad.watch_detail
    assert "more than the 5.0% allowed" in bad.watch_detail
    assert rollback.events.first().detail.startswith(f"the watch of deployment {bad.pk} saw")
    staging.refresh_from_db()
    assert "rolled back to release 1" in staging.auto_deploy_paused

    # Paused: the next push is not deployed here by itself...
    third = app.release("v3")
    time.sleep(1)
    assert not Deployment.objects.filter(environment=staging, release=third).exists()
    # ...until a person deploys one.
    wait_for_deployment(environment_promote(environment=staging, release=third))
    staging.refresh_from_db()
    assert staging.auto_deploy_paused == "" and served(staging) == "v3"


def test_a_healthy_release_passes_its_watch_and_stays(app: App) -> None:
    app.repo.write("dockyard.yml", WATCHED_SPEC)
    app.auto_deployment(app.release("v1"))
    staging = app.environment("staging")
    traffic_pass(deploy_tools())
    good = app.auto_deployment(app.release("v2"))
    assert good.watch_state == WatchState.WATCHING

    with LoadGenerator(
        staging.frontend_port, address=address(staging), path="/cgi-bin/work", max_requests=200
    ) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            traffic_pass(deploy_tools())
            good.refresh_from_db()
            if good.watch_state != WatchState.WATCHING:
                break
            time.sleep(0.5)
    assert load.result.failures == []
    assert good.watch_state == WatchState.PASSED, good.watch_detail
    assert good.watch_detail.startswith("0 of ")
    assert not Deployment.objects.filter(environment=staging, kind=DeploymentKind.ROLLBACK)
    assert served(staging) == "v2"
