"""The proxy in front of the environments, kept as the database says.

Every environment is a frontend on its address and port and two slots (blue, green), the live
one ready and the other in maintenance; deployments move traffic through the runtime API, and
these functions put the proxy back when it was restarted, killed or changed by hand.
"""

import logging

from infrastructure.haproxy import ProxyBackend, ProxyServer, TrafficProxy
from releases.models import Deployment, Environment
from releases.states import DEPLOYMENT_FINAL_STATES, Slot

logger = logging.getLogger(__name__)


def proxy_backends() -> list[ProxyBackend]:
    """Every environment as the proxy should serve it, from the database."""
    return [
        ProxyBackend(
            name=environment.proxy_backend,
            address=environment.address,
            frontend_port=environment.frontend_port,
            servers=tuple(
                ProxyServer(
                    name=slot,
                    address=environment.address,
                    port=environment.slot_port(slot),
                    enabled=environment.live_slot == slot,
                )
                for slot in Slot.values
            ),
        )
        for environment in Environment.objects.all()
    ]


def proxy_apply(proxy: TrafficProxy) -> None:
    """Start or reload the proxy so it serves every environment as the database says."""
    proxy.apply(proxy_backends())


def proxy_servers_align(proxy: TrafficProxy) -> None:
    """Put each environment's servers in the state the database says, unless a deployment
    is moving them: the live slot ready, the other in maintenance (HAProxy restarted from an
    older file, or someone used its runtime API by hand)."""
    busy = set(
        Deployment.objects.exclude(status__in=DEPLOYMENT_FINAL_STATES).values_list(
            "environment_id", flat=True
        )
    )
    states = proxy.server_states()
    for environment in Environment.objects.exclude(live_slot="").exclude(pk__in=busy):
        for slot in Slot.values:
            wanted = "ready" if slot == environment.live_slot else "maint"
            current = states.get((environment.proxy_backend, slot))
            if current is not None and current != wanted:
                logger.warning(
                    "proxy: %s/%s was %s, the database says %s; restoring",
                    environment.proxy_backend,
                    slot,
                    current,
                    wanted,
                )
                proxy.set_server(
                    environment.proxy_backend,
                    slot,
                    address=environment.address,
                    port=environment.slot_port(slot),
                    state=wanted,
                )


def proxy_reconcile(proxy: TrafficProxy) -> None:
    """Bring the proxy back to what the database says, if anything is deployed: started if
    it is down (killed, machine restarted), servers' states restored."""
    if not Environment.objects.exclude(live_slot="").exists():
        return
    proxy_apply(proxy)
    proxy_servers_align(proxy)
