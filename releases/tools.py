"""The outside world a deployment works with: engines, the proxy, the apps' health endpoints.

Passed in, not built where they are used: the tasks, the reaper and the commands hand in the
real adapters (`deploy_tools`), and tests of the deploy state machine hand in stand-ins.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from infrastructure.docker_engine import DockerEngine, EngineFactory
from infrastructure.haproxy import HAProxy, TrafficProxy
from infrastructure.health_check import Probe, probe


@dataclass(frozen=True)
class DeployTools:
    # An engine by its URL (an environment's docker_host, else this worker's).
    engines: EngineFactory
    # The proxy in front of the environments (HAProxy on this worker's host).
    proxy: Callable[[], TrafficProxy]
    # GET address:port/path on a freshly started app: healthy or not, and what it answered.
    probe: Callable[..., Probe]


def deploy_tools() -> DeployTools:
    """The real adapters, as this worker's settings name them."""
    return DeployTools(
        engines=DockerEngine,
        proxy=lambda: HAProxy(settings.DOCKYARD_PROXY_DIR),
        probe=probe,
    )
