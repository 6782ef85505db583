"""The deploy state machines, step by step, with in-memory stand-ins for the hosts' engines
and proxies. What these decide (which slot, which hosts in which batch, what is recorded, what
is undone) is the subject here; that the real engines and HAProxies do it is the subject of
tests/releases/test_deployments.py and tests/fleet/test_deploy_fleet.py."""

import itertools
from collections.abc import Iterator

import pytest

from infrastructure import dispatch
from projects.models import Project
from releases.executor import (
    deployment_abandon,
    host_deployment_abandon,
)
from releases.models import Deployment, Environment, Host, HostDeployment, Release
from releases.services import deployment_request, environment_rollback
from releases.states import DeploymentStatus, HostStatus
from releases.tools import DeployTools
from tests.factories import make_environment, make_host, make_project, make_release
from tests.fakes import FakeEngine, FakeProxy, fake_deploy_tools
from tests.releases.carrying import drive

pytestmark = pytest.mark.django_db

COORDINATOR = ["queued", "preparing", "rolling", "finishing", "succeeded"]
HOST = ["starting", "checking", "switching", "draining", "switched", "finished"]


@pytest.fixture(autouse=True)
def nothing_reaches_the_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Transactional tests commit, and a commit would send real tasks; these tests carry the
    # jobs themselves (`drive`).
    for name in ("queue_deployment", "queue_host_deployment", "queue_deployment_notifications"):
        monkeypatch.setattr(dispatch, name, lambda **_: None)
    yield


@pytest.fixture
def project() -> Project:
    return make_project()


@pytest.fixture
def environment(project: Project) -> Environment:
    environment = make_environment(project, "production")
    Environment.objects.filter(pk=environment.pk).update(health_timeout_seconds=1)
    environment.refresh_from_db()
    return environment


def three_hosts() -> list[Host]:
    return [make_host(f"h{n}", f"127.0.0.{n + 1}") for n in (1, 2, 3)]


def deploy(environment: Environment, number: int, tools: DeployTools) -> Deployment:
    release = make_release(environment.project, number)
    deployment, _ = drive(deployment_request(environment=environment, release=release), tools)
    return deployment


def moves(deployment: Deployment, host: Host | None = None) -> list[str]:
    return list(
        deployment.events.filter(host=host).order_by("pk").values_list("to_status", flat=True)
    )


def on(deployment: Deployment, host: Host | str) -> HostDeployment:
    name = host if isinstance(host, str) else host.name
    return HostDeployment.objects.get(deployment=deployment, host__name=name)


def test_a_first_deployment_walks_every_step_into_the_blue_slot(environment: Environment) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    [host] = environment.hosts.all()

    deployment = deploy(environment, 1, fake_deploy_tools(engine, proxy))

    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert moves(deployment) == COORDINATOR
    assert moves(deployment, host) == HOST
    environment.refresh_from_db()
    assert (environment.live_slot, environment.current_release_id) == (
        "blue",
        deployment.release_id,
    )
    [container] = engine.containers.values()
    assert container.environment["PORT"] == str(environment.blue_port)
    assert container.environment["HOST"] == host.address
    assert container.labels["dockyard.deployment"] == str(deployment.pk)
    assert container.labels["dockyard.host"] == host.name
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"
    # Checked through the host's proxy, at the address its apps listen on.
    assert proxy.checked == [(host.address, environment.blue_port)]


def test_the_next_release_goes_to_the_other_slot_and_the_old_one_is_drained_and_kept(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    tools = fake_deploy_tools(engine, proxy)
    first = deploy(environment, 1, tools)

    second = deploy(environment, 2, tools)

    assert (second.status, second.slot) == (DeploymentStatus.SUCCEEDED, "green")
    backend = environment.proxy_backend
    assert proxy.states[(backend, "green")] == "ready"
    assert proxy.states[(backend, "blue")] == "maint"
    [old], [new] = first.host_deployments.all(), second.host_deployments.all()
    assert engine.containers[old.container_id].state == "exited"  # kept for rollback
    assert engine.containers[new.container_id].state == "running"
    assert new.previous_container_id == old.container_id
    # The proxy's file, rewritten after the switch, names green as the one serving.
    [remembered] = proxy.remembered[-1]
    assert [(s.name, s.enabled) for s in remembered.servers] == [("blue", False), ("green", True)]


def test_a_release_that_never_answers_its_health_check_never_takes_traffic(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    tools = fake_deploy_tools(engine, proxy)
    first = deploy(environment, 1, tools)
    proxy.sick_ports.add(environment.green_port)

    failed = deploy(environment, 2, tools)

    assert failed.status == DeploymentStatus.FAILED
    [target] = failed.host_deployments.all()
    assert moves(failed, target.host) == ["starting", "checking", "failed"]
    assert failed.failure_reason.startswith(
        "host local: health check failed: not healthy within 1s"
    )
    assert target.container_log == f"logs of {target.container_id}\n"
    assert target.container_id not in engine.containers  # it went; the old slot serves
    environment.refresh_from_db()
    assert (environment.live_slot, environment.current_release_id) == ("blue", first.release_id)
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"


def test_a_container_that_exits_fails_the_check_at_once_saying_so(
    environment: Environment, project: Project
) -> None:
    engine = FakeEngine(crashing_images={f"127.0.0.1:5000/{project.slug}@sha256:{1:064x}"})
    proxy = FakeProxy(sick_ports={environment.blue_port})

    failed = deploy(environment, 1, fake_deploy_tools(engine, proxy))

    assert failed.status == DeploymentStatus.FAILED
    assert failed.failure_reason.startswith(
        "host local: health check failed: the container exited (DOWN"
    )


def test_an_image_that_cannot_be_pulled_fails_before_anything_starts(
    environment: Environment,
) -> None:
    engine = FakeEngine(failing={"ensure_image"})

    failed = deploy(environment, 1, fake_deploy_tools(engine))

    assert failed.status == DeploymentStatus.FAILED
    assert "host local:" in failed.failure_reason
    assert "the engine is gone" in failed.failure_reason
    assert failed.failure_reason.endswith("nothing was changed")
    assert engine.containers == {}
    environment.refresh_from_db()
    assert environment.live_slot == ""


def test_a_rollback_restarts_the_kept_container_instead_of_starting_a_new_one(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    tools = fake_deploy_tools(engine, proxy)
    first = deploy(environment, 1, tools)
    deploy(environment, 2, tools)
    started_before = [call for call in engine.calls if call.startswith("start_service")]

    rollback, _ = drive(environment_rollback(environment=environment), tools)

    assert rollback.status == DeploymentStatus.SUCCEEDED
    [kept], [restarted] = first.host_deployments.all(), rollback.host_deployments.all()
    assert rollback.release_id == first.release_id
    assert (restarted.container_id, restarted.reused_container) == (kept.container_id, True)
    assert [c for c in engine.calls if c.startswith("start_service")] == started_before
    assert f"start_container {kept.container_id}" in engine.calls


@pytest.mark.django_db(transaction=True)
def test_a_release_command_runs_once_before_any_host_switches_and_its_failure_stops_all(
    project: Project,
) -> None:
    environment = make_environment(project, "production", hosts=three_hosts())
    engine, proxies = FakeEngine(exit_codes={"manage.py migrate": 3}), {}
    tools = fake_deploy_tools(engine, proxies=proxies)
    release = make_release(project, 1)
    Release.objects.filter(pk=release.pk).update(
        deploy_config={"release_command": ["manage.py", "migrate"]}
    )

    failed, batches = drive(deployment_request(environment=environment, release=release), tools)

    assert failed.status == DeploymentStatus.FAILED
    assert moves(failed) == ["queued", "preparing", "releasing", "failed"]
    assert "`manage.py migrate` exited with status 3 on h1; no host was switched" in (
        failed.failure_reason
    )
    assert failed.release_log == "ran manage.py migrate\n"
    assert [c for c in engine.calls if c.startswith("run_throwaway")] == [
        f"run_throwaway {release.image} manage.py migrate"
    ]
    assert batches == []
    assert not [c for c in engine.calls if c.startswith("start_service")]


@pytest.mark.django_db(transaction=True)
def test_production_goes_one_host_at_a_time_and_staging_all_at_once(project: Project) -> None:
    hosts = three_hosts()
    staging = make_environment(project, "staging", hosts=hosts)
    production = make_environment(project, "production", after=staging, hosts=hosts)
    engine, proxies = FakeEngine(), {}
    tools = fake_deploy_tools(engine, proxies=proxies)
    release = make_release(project, 1)

    staged, staging_batches = drive(deployment_request(environment=staging, release=release), tools)
    promoted, production_batches = drive(
        deployment_request(environment=production, release=release), tools
    )
    # One batch after the other: each host began once the one before had switched.
    targets = list(promoted.host_deployments.order_by("position"))
    for earlier, later in itertools.pairwise(targets):
        switched = promoted.events.get(host=earlier.host, to_status=HostStatus.SWITCHED)
        assert later.started_at is not None and later.started_at >= switched.at

    assert (staged.status, promoted.status) == ("succeeded", "succeeded")
    assert staging_batches == [["h1", "h2", "h3"]]
    assert production_batches == [["h1"], ["h2"], ["h3"]]
    for host in hosts:
        assert proxies[host.name].states[(production.proxy_backend, "blue")] == "ready"
        assert moves(promoted, host) == HOST
        [container] = [
            c
            for c in engine.containers.values()
            if c.labels["dockyard.host"] == host.name
            and c.labels["dockyard.deployment"] == str(promoted.pk)
        ]
        assert container.environment["HOST"] == host.address


@pytest.mark.django_db(transaction=True)
def test_a_host_failing_after_others_switched_sends_them_back_and_names_it(
    project: Project,
) -> None:
    environment = make_environment(project, "production", hosts=three_hosts())
    Environment.objects.filter(pk=environment.pk).update(health_timeout_seconds=1, max_parallel=1)
    engine, proxies = FakeEngine(), {}
    tools = fake_deploy_tools(engine, proxies=proxies)
    first = deploy(environment, 1, tools)
    proxies["h3"].sick_ports.add(environment.green_port)

    failed = deploy(environment, 2, tools)

    assert failed.status == DeploymentStatus.FAILED
    assert failed.failure_reason.startswith("host h3: health check failed")
    assert failed.failure_reason.endswith("switched back: h1, h2")
    assert [on(failed, name).status for name in ("h1", "h2", "h3")] == [
        "reverted",
        "reverted",
        "failed",
    ]
    backend = environment.proxy_backend
    for name in ("h1", "h2", "h3"):
        assert proxies[name].states[(backend, "blue")] == "ready"
        assert proxies[name].states[(backend, "green")] == "maint"
    # The old release's containers never stopped; the new ones went.
    for name in ("h1", "h2", "h3"):
        assert engine.containers[on(first, name).container_id].state == "running"
        assert on(failed, name).container_id not in engine.containers
    environment.refresh_from_db()
    assert (environment.live_slot, environment.current_release_id) == ("blue", first.release_id)


@pytest.mark.django_db(transaction=True)
def test_a_rollback_switches_every_host_in_one_batch(project: Project) -> None:
    environment = make_environment(project, "production", hosts=three_hosts())
    Environment.objects.filter(pk=environment.pk).update(max_parallel=1)
    tools = fake_deploy_tools(FakeEngine(), proxies={})
    first = deploy(environment, 1, tools)
    deploy(environment, 2, tools)

    rollback, batches = drive(environment_rollback(environment=environment), tools)

    assert rollback.status == DeploymentStatus.SUCCEEDED
    assert rollback.release_id == first.release_id
    assert batches == [["h1", "h2", "h3"]]


@pytest.mark.django_db(transaction=True)
def test_a_host_whose_worker_is_gone_for_good_is_switched_back_with_the_others(
    project: Project,
) -> None:
    environment = make_environment(project, "production", hosts=three_hosts())
    Environment.objects.filter(pk=environment.pk).update(max_parallel=1)
    engine, proxies = FakeEngine(), {}
    tools = fake_deploy_tools(engine, proxies=proxies)
    first = deploy(environment, 1, tools)
    deployment = deployment_request(environment=environment, release=make_release(project, 2))
    # The coordinator's worker died carrying the hosts: h1 had switched; h2's worker (another,
    # after a restart) got as far as the switch, then was lost for the last time.
    Deployment.objects.filter(pk=deployment.pk).update(status="rolling", slot="green")
    backend = environment.proxy_backend
    for position, host in enumerate(Host.objects.order_by("name")):
        HostDeployment.objects.create(
            deployment=deployment,
            host=host,
            position=position,
            batch=position,
            status=["switched", "switching", "waiting"][position],
            previous_container_id=on(first, host.name).container_id,
        )
    for name in ("h1", "h2"):
        proxies[name].switch(
            backend,
            to=[("green", environment.green_port)],
            address="127.0.0.9",
            away_from=["blue"],
        )
    h2 = on(deployment, "h2")

    host_deployment_abandon(target=h2, reason="its worker was lost 3 times")
    ended, _ = drive(deployment, tools)

    assert ended.status == DeploymentStatus.FAILED
    assert "host h2: its worker was lost 3 times" in ended.failure_reason
    assert on(ended, "h1").status == HostStatus.REVERTED
    assert on(ended, "h3").status == HostStatus.WAITING  # never started
    for name in ("h1", "h2", "h3"):
        states = proxies[name].states
        assert states[(environment.proxy_backend, "blue")] == "ready", name
        assert states.get((environment.proxy_backend, "green"), "maint") == "maint", name


def test_a_coordinator_abandoned_while_preparing_fails_and_changes_nothing(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    tools = fake_deploy_tools(engine, proxy)
    deploy(environment, 1, tools)
    deployment = deployment_request(
        environment=environment, release=make_release(environment.project, 2)
    )
    Deployment.objects.filter(pk=deployment.pk).update(status="preparing", slot="green")
    deployment.refresh_from_db()

    deployment_abandon(deployment=deployment, reason="its worker was lost", tools=tools)

    deployment.refresh_from_db()
    assert (deployment.status, deployment.failure_reason) == ("failed", "its worker was lost")
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"


def test_a_coordinator_abandoned_after_every_host_switched_succeeded(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    tools = fake_deploy_tools(engine, proxy)
    deploy(environment, 1, tools)
    deployment = deployment_request(
        environment=environment, release=make_release(environment.project, 2)
    )
    Deployment.objects.filter(pk=deployment.pk).update(status="finishing", slot="green")
    deployment.refresh_from_db()

    deployment_abandon(deployment=deployment, reason="its worker was lost", tools=tools)

    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert "its worker was lost" in deployment.events.last().detail
