"""The deploy state machine, step by step, with in-memory stand-ins for the engine, the proxy
and the health probe. What these decide (which slot, what is recorded, what is undone) is the
subject here; that the real engine and HAProxy do it is tests/releases/test_deployments.py's."""

import pytest

from projects.models import Project
from releases.executor import deployment_abandon, deployment_execute
from releases.models import Deployment, Environment
from releases.services import deployment_request, environment_rollback
from releases.states import DeploymentStatus
from tests.factories import make_environment, make_project, make_release
from tests.fakes import FakeEngine, FakeProbe, FakeProxy, fake_deploy_tools

pytestmark = pytest.mark.django_db

STEPS = ["queued", "preparing", "starting", "checking", "switching", "draining", "succeeded"]


@pytest.fixture
def project() -> Project:
    return make_project()


@pytest.fixture
def environment(project: Project) -> Environment:
    environment = make_environment(project, "production")
    Environment.objects.filter(pk=environment.pk).update(health_timeout_seconds=1)
    environment.refresh_from_db()
    return environment


def deploy(environment: Environment, number: int, **tools: object) -> Deployment:
    release = make_release(environment.project, number)
    deployment = deployment_request(environment=environment, release=release)
    result = deployment_execute(deployment_id=deployment.pk, tools=fake_deploy_tools(**tools))
    assert result is not None
    return Deployment.objects.get(pk=deployment.pk)


def moves(deployment: Deployment) -> list[str]:
    return list(deployment.events.values_list("to_status", flat=True))


def test_a_first_deployment_walks_every_step_into_the_blue_slot(environment: Environment) -> None:
    engine, proxy, probe = FakeEngine(), FakeProxy(), FakeProbe()

    deployment = deploy(environment, 1, engine=engine, proxy=proxy, probe=probe)

    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert moves(deployment) == STEPS
    environment.refresh_from_db()
    assert (environment.live_slot, environment.current_release_id) == (
        "blue",
        deployment.release_id,
    )
    [container] = engine.containers.values()
    assert container.environment["PORT"] == str(environment.blue_port)
    assert container.environment["HOST"] == environment.address
    assert container.labels["dockyard.deployment"] == str(deployment.pk)
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"
    assert probe.asked == [(environment.address, environment.blue_port, "/")]


def test_the_next_release_goes_to_the_other_slot_and_the_old_one_is_drained_and_kept(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    first = deploy(environment, 1, engine=engine, proxy=proxy)

    second = deploy(environment, 2, engine=engine, proxy=proxy)

    assert (second.status, second.slot) == (DeploymentStatus.SUCCEEDED, "green")
    backend = environment.proxy_backend
    assert proxy.states[(backend, "green")] == "ready"
    assert proxy.states[(backend, "blue")] == "maint"
    assert engine.containers[first.container_id].state == "exited"  # kept for rollback
    assert engine.containers[second.container_id].state == "running"
    # The proxy's file, rewritten after the switch, names green as the one serving.
    [remembered] = proxy.remembered[-1]
    assert [(s.name, s.enabled) for s in remembered.servers] == [("blue", False), ("green", True)]


def test_a_release_that_never_answers_its_health_check_never_takes_traffic(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    first = deploy(environment, 1, engine=engine, proxy=proxy)
    sick = FakeProbe(sick_ports={environment.green_port})

    failed = deploy(environment, 2, engine=engine, proxy=proxy, probe=sick)

    assert failed.status == DeploymentStatus.FAILED
    assert moves(failed) == ["queued", "preparing", "starting", "checking", "failed"]
    assert failed.failure_reason.startswith("health check failed: not healthy within 1s")
    assert failed.container_log == f"logs of {failed.container_id}\n"
    assert failed.container_id not in engine.containers  # it went; the old slot serves
    environment.refresh_from_db()
    assert (environment.live_slot, environment.current_release_id) == ("blue", first.release_id)
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"


def test_a_container_that_exits_fails_the_check_at_once_saying_so(
    environment: Environment, project: Project
) -> None:
    engine = FakeEngine(crashing_images={f"127.0.0.1:5000/{project.slug}@sha256:{1:064x}"})
    refusing = FakeProbe(sick_ports={environment.blue_port})

    failed = deploy(environment, 1, engine=engine, probe=refusing)

    assert failed.status == DeploymentStatus.FAILED
    assert failed.failure_reason == "health check failed: the container exited (GET /: 503)"
    # Asked once: an exited container is not waited for until the timeout.
    assert len(refusing.asked) == 1


def test_an_image_that_cannot_be_pulled_fails_before_anything_starts(
    environment: Environment,
) -> None:
    engine = FakeEngine(failing={"ensure_image"})

    failed = deploy(environment, 1, engine=engine)

    assert failed.status == DeploymentStatus.FAILED
    assert "the engine is gone" in failed.failure_reason
    assert engine.containers == {}
    environment.refresh_from_db()
    assert environment.live_slot == ""


def test_a_rollback_restarts_the_kept_container_instead_of_starting_a_new_one(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    first = deploy(environment, 1, engine=engine, proxy=proxy)
    deploy(environment, 2, engine=engine, proxy=proxy)
    started_before = [call for call in engine.calls if call.startswith("start_service")]

    rollback = environment_rollback(environment=environment)
    deployment_execute(deployment_id=rollback.pk, tools=fake_deploy_tools(engine, proxy))
    rollback.refresh_from_db()

    assert rollback.status == DeploymentStatus.SUCCEEDED
    assert (rollback.release_id, rollback.container_id) == (first.release_id, first.container_id)
    assert rollback.reused_container
    assert [c for c in engine.calls if c.startswith("start_service")] == started_before
    assert f"start_container {first.container_id}" in engine.calls


def test_a_deployment_abandoned_before_its_switch_fails_and_its_container_goes(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    deploy(environment, 1, engine=engine, proxy=proxy)
    release = make_release(environment.project, 2)
    deployment = deployment_request(environment=environment, release=release)
    # As far as a worker got before it was lost: the new container runs, no traffic moved.
    engine.start_service(
        image=release.image,
        name="new",
        environment={},
        labels={"dockyard.deployment": str(deployment.pk)},
    )
    Deployment.objects.filter(pk=deployment.pk).update(status="checking", slot="green")
    deployment.refresh_from_db()

    deployment_abandon(
        deployment=deployment, reason="its worker was lost", tools=fake_deploy_tools(engine, proxy)
    )

    deployment.refresh_from_db()
    assert (deployment.status, deployment.failure_reason) == ("failed", "its worker was lost")
    assert not [c for c in engine.containers.values() if c.name == "new"]
    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"


def test_a_deployment_abandoned_after_its_switch_succeeded_as_far_as_traffic_goes(
    environment: Environment,
) -> None:
    engine, proxy = FakeEngine(), FakeProxy()
    deploy(environment, 1, engine=engine, proxy=proxy)
    release = make_release(environment.project, 2)
    deployment = deployment_request(environment=environment, release=release)
    Deployment.objects.filter(pk=deployment.pk).update(status="switching", slot="green")
    Environment.objects.filter(pk=environment.pk).update(live_slot="green", current_release=release)
    deployment.refresh_from_db()

    deployment_abandon(
        deployment=deployment, reason="its worker was lost", tools=fake_deploy_tools(engine, proxy)
    )

    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert moves(deployment)[-2:] == ["draining", "succeeded"]
    # Put back as the database says: green serves, blue is out.
    assert proxy.states[(environment.proxy_backend, "green")] == "ready"
    assert proxy.states[(environment.proxy_backend, "blue")] == "maint"
