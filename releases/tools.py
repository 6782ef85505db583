"""The outside world a deployment works with: the hosts' engines and their proxies.

Passed in, not built where they are used: the tasks, the reaper and the commands hand in the
real adapters (`deploy_tools`), and tests of the deploy state machine hand in stand-ins.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

from infrastructure.docker_engine import ContainerEngine, DockerEngine, EngineFactory, KeptEngines
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


# A reader of every host every few seconds (the request metrics' collector) gives up on a
# silent engine well before a pass is due again many times over.
READER_TIMEOUT_SECONDS = 30
_kept = threading.local()


def kept_deploy_tools() -> DeployTools:
    """The real adapters, for what reads every host every few seconds: each host's engine
    stays open from one call to the next on this thread (over ssh, a handshake each time
    otherwise), and a silent one is given up on within READER_TIMEOUT_SECONDS."""
    if not hasattr(_kept, "engines"):
        _kept.engines = KeptEngines(_reader_engine)
    return DeployTools(engines=_kept.engines, proxy=_host_haproxy)


def _reader_engine(url: str) -> DockerEngine:
    return DockerEngine(url, timeout=READER_TIMEOUT_SECONDS)


def _host_haproxy(engine: ContainerEngine, host: Host) -> TrafficProxy:
    assert isinstance(engine, DockerEngine), "a host's HAProxy is driven through its engine"
    return HostHAProxy(engine, host=host.name)
