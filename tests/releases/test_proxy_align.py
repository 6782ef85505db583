"""The housekeeper puts a host's servers back as the database says, and never undoes a
deployment's switch, even one that begins while it looks."""

from dataclasses import dataclass, field

import pytest

from infrastructure import dispatch
from releases.models import Deployment, Environment, Host
from releases.proxy import proxy_apply, proxy_servers_align
from releases.services import deployment_request, local_host
from tests.factories import make_environment, make_host, make_project, make_release
from tests.fakes import FakeProxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def environment() -> Environment:
    environment = make_environment(make_project(), "production")
    release = make_release(environment.project, 1)
    Environment.objects.filter(pk=environment.pk).update(live_slot="blue", current_release=release)
    environment.refresh_from_db()
    return environment


def switched_by_hand(environment: Environment, proxy: FakeProxy) -> None:
    proxy.states[(environment.proxy_backend, "blue")] = "maint"
    proxy.states[(environment.proxy_backend, "green")] = "ready"


def test_servers_changed_by_hand_are_put_back_as_the_database_says(
    environment: Environment,
) -> None:
    proxy = FakeProxy()
    switched_by_hand(environment, proxy)

    proxy_servers_align(proxy, local_host())

    assert proxy.states[(environment.proxy_backend, "blue")] == "ready"
    assert proxy.states[(environment.proxy_backend, "green")] == "maint"


def test_an_environment_being_deployed_is_left_as_its_deployment_has_it(
    environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "queue_deployment", lambda **_: None)
    deployment_request(environment=environment, release=make_release(environment.project, 2))
    proxy = FakeProxy()
    switched_by_hand(environment, proxy)  # as the deployment switched it

    proxy_servers_align(proxy, local_host())

    assert proxy.states[(environment.proxy_backend, "green")] == "ready"


@dataclass
class DeployedWhileLooking(FakeProxy):
    """A proxy whose first read races a deployment: the deployment begins (and switches)
    right after the housekeeper looked."""

    environment: Environment | None = None
    reads: list[int] = field(default_factory=list)

    def server_states(self) -> dict[tuple[str, str], str]:
        states = super().server_states()
        self.reads.append(len(self.reads))
        if len(self.reads) == 1 and self.environment is not None:
            Deployment.objects.create(
                environment=self.environment,
                release=make_release(self.environment.project, 2),
                kind="deploy",
                status="rolling",
                slot="green",
            )
        return states


def test_a_deployment_that_begins_while_the_housekeeper_looks_is_not_undone(
    environment: Environment,
) -> None:
    proxy = DeployedWhileLooking(environment=environment)
    switched_by_hand(environment, proxy)

    proxy_servers_align(proxy, local_host())

    assert proxy.states[(environment.proxy_backend, "green")] == "ready"
    assert proxy.states[(environment.proxy_backend, "blue")] == "maint"


def test_a_host_row_read_before_it_was_made_again_still_applies_the_hosts_environments() -> None:
    # A housekeeper's pass reads the hosts, then applies each one's proxy seconds later; a host
    # removed and added back meanwhile must not read as a host with nothing to serve.
    stale = make_host("edge", "127.0.0.3")
    Host.objects.filter(pk=stale.pk).delete()
    again = make_host("edge", "127.0.0.3")
    environment = make_environment(make_project(), "staging", hosts=[again])
    proxy = FakeProxy()

    proxy_apply(proxy, stale)

    assert [backend.name for backend in proxy.applied[-1]] == [environment.proxy_backend]
