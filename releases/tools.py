"""The outside world a deployment works with: the hosts' engines and their proxies.

Passed in, not built where they are used: the tasks, the reaper and the commands hand in the
real adapters (`deploy_tools`), and tests of the deploy state machine hand in stand-ins.
"""

from collections.abc import Callable
from dataclasses import dataclass

from infrastructure.docker_engine import ContainerEngine, DockerEngine, EngineFactory
from infrastructure.haproxy import HostHAProxy, TrafficProxy
from releases.models import Host


@dataclass(frozen=True)
class DeployTools:
    # An engine by its URL (a host's engine).
    engines: EngineFactory
    # A host's proxy, driven through an open connection to that host's engine.
    proxy: Callable[[ContainerEngine, Host], TrafficProxy]


def deploy_tools() -> DeployTools:
    """The real adapters."""
    return DeployTools(engines=DockerEngine, proxy=_host_haproxy)


def _host_haproxy(engine: ContainerEngine, host: Host) -> TrafficProxy:
    assert isinstance(engine, DockerEngine), "a host's HAProxy is driven through its engine"
    return HostHAProxy(engine, host=host.name)
