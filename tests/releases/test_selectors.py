"""Which release a rollback goes back to: the one that served before the current one, never
the one just rolled away from. Deployments run through the real state machine with the
in-memory stand-ins of tests/fakes.py."""

from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from releases.models import Deployment, Environment, Host, HostDeployment, Release
from releases.selectors import live_containers, rollback_candidates, rollback_target
from releases.services import DeploymentRefused, deployment_request, environment_rollback
from tests.factories import (
    make_environment,
    make_host,
    make_project,
    make_release,
    make_succeeded_deployment,
)
from tests.fakes import FakeEngine, FakeProxy, fake_deploy_tools
from tests.releases.carrying import drive

pytestmark = pytest.mark.django_db


@dataclass
class Production:
    """An environment and the engine and proxy every deployment to it goes through."""

    environment: Environment
    engine: FakeEngine = field(default_factory=FakeEngine)
    proxy: FakeProxy = field(default_factory=FakeProxy)

    def carry_out(self, deployment: Deployment) -> Deployment:
        ended, _ = drive(deployment, fake_deploy_tools(engine=self.engine, proxy=self.proxy))
        return ended

    def deploy(self, *numbers: int) -> list[Release]:
        releases = [self.release(number) for number in numbers]
        for release in releases:
            self.deploy_release(release)
        return releases

    def release(self, number: int) -> Release:
        return make_release(self.environment.project, number)

    def deploy_release(self, release: Release) -> None:
        deployment = self.carry_out(
            deployment_request(environment=self.environment, release=release)
        )
        assert deployment.status == "succeeded", deployment.failure_reason

    def roll_back(self, release: Release | None = None) -> Deployment:
        rollback = environment_rollback(environment=self.environment, release=release)
        return self.carry_out(rollback)

    @property
    def serving(self) -> int | None:
        current = Environment.objects.get(pk=self.environment.pk).current_release
        return current.number if current else None

    @property
    def rollback_to(self) -> int | None:
        target = rollback_target(Environment.objects.get(pk=self.environment.pk))
        return target.release.number if target else None

    @property
    def candidates(self) -> list[int]:
        fresh = Environment.objects.get(pk=self.environment.pk)
        return [deployment.release.number for deployment in rollback_candidates(fresh)]


@pytest.fixture
def production() -> Production:
    environment = make_environment(make_project(), "production")
    Environment.objects.filter(pk=environment.pk).update(health_timeout_seconds=1)
    environment.refresh_from_db()
    return Production(environment)


def test_a_rollback_goes_back_to_the_release_that_served_before(production: Production) -> None:
    production.deploy(1, 2, 3)
    assert production.rollback_to == 2
    assert production.candidates == [2, 1]


def test_after_rolling_back_from_3_to_2_the_next_rollback_goes_to_1_not_back_to_3(
    production: Production,
) -> None:
    production.deploy(1, 2, 3)
    assert production.roll_back().status == "succeeded"
    assert production.serving == 2
    assert production.rollback_to == 1
    assert production.candidates == [1]

    production.roll_back()
    assert production.serving == 1
    assert production.rollback_to is None


def test_a_release_rolled_away_from_then_deployed_again_may_be_rolled_back_to_again(
    production: Production,
) -> None:
    _, _, three = production.deploy(1, 2, 3)
    production.roll_back()
    production.deploy_release(three)
    production.deploy(4)
    assert production.candidates == [3, 2, 1]


def test_a_failed_rollback_leaves_the_release_it_tried_to_leave_as_it_was(
    production: Production,
) -> None:
    production.deploy(1, 2, 3)
    environment = production.environment
    production.proxy.sick_ports.update({environment.blue_port, environment.green_port})
    rollback = production.carry_out(environment_rollback(environment=environment))
    assert rollback.status == "failed"
    assert production.serving == 3
    assert production.rollback_to == 2


def test_a_rollback_to_a_chosen_earlier_release_serves_it(production: Production) -> None:
    one, _, _ = production.deploy(1, 2, 3)
    rollback = production.roll_back(one)
    assert rollback.status == "succeeded"
    assert rollback.kind == "rollback"
    assert rollback.previous_release is not None and rollback.previous_release.number == 3
    assert production.serving == 1


def test_a_rollback_to_a_release_that_never_served_here_or_serves_now_is_refused(
    production: Production,
) -> None:
    _, two = production.deploy(1, 2)
    elsewhere = production.release(3)
    with pytest.raises(DeploymentRefused, match="release 3 is not one production can roll back to"):
        environment_rollback(environment=production.environment, release=elsewhere)
    with pytest.raises(DeploymentRefused, match="release 2 is not one production can roll back to"):
        environment_rollback(environment=production.environment, release=two)
    assert not Deployment.objects.filter(kind="rollback").exists()


def finished_on(deployment: Deployment, host: Host, container_id: str) -> HostDeployment:
    return HostDeployment.objects.create(
        deployment=deployment,
        host=host,
        position=0,
        batch=0,
        status="finished",
        container_id=container_id,
        finished_at=timezone.now(),
    )


def test_on_each_host_the_live_containers_are_the_newest_finished_ones_of_the_live_slot() -> None:
    east, west = make_host("east", "127.0.0.2"), make_host("west", "127.0.0.3")
    environment = make_environment(make_project(), "production", hosts=[east, west])
    first, second = make_release(environment.project, 1), make_release(environment.project, 2)
    older = make_succeeded_deployment(environment, first)
    finished_on(older, east, "old-east")
    finished_on(older, west, "old-west")
    newer = make_succeeded_deployment(environment, second, live=True)
    HostDeployment.objects.filter(pk=finished_on(newer, east, "new-east").pk).update(
        replica_container_ids=["new-east-2"]
    )
    # West's part of the newer deployment did not finish: the older container serves there.
    HostDeployment.objects.create(
        deployment=newer, host=west, position=1, batch=0, status="failed", container_id="bad"
    )

    live = live_containers(environment)

    assert [(c.host.name, c.container_id, c.replica, c.slot, c.release_number) for c in live] == [
        ("east", "new-east", 1, "blue", 2),
        ("east", "new-east-2", 2, "blue", 2),
        ("west", "old-west", 1, "blue", 1),
    ]


def test_an_environment_nothing_serves_yet_has_no_live_containers() -> None:
    environment = make_environment(make_project(), "staging")
    assert live_containers(environment) == []
