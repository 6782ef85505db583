"""Each host's proxy, kept as the database says.

On a host, every environment that runs there is a frontend on the host's address and the
environment's port, and two slots (blue, green), the live one ready and the other in
maintenance; deployments move traffic through each host's runtime API, and these functions put
a host's proxy back when it was restarted, killed or changed by hand.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from infrastructure.cluster_locks import cluster_lock_waited
from infrastructure.docker_engine import ContainerEngine, DockerEngineError
from infrastructure.haproxy import ProxyBackend, ProxyError, ProxyServer, TrafficProxy
from releases.models import Environment, Host
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
    Slot,
    replica_server,
)
from releases.tools import DeployTools

logger = logging.getLogger(__name__)

# How long a deployment waits for a housekeeper putting its environment's servers back.
SERVERS_LOCK_SECONDS = 60


def proxy_backend(environment: Environment, host: Host) -> ProxyBackend:
    """The environment as `host`'s proxy should serve it, from the database: a server per
    replica port of each slot, the live slot's replicas that run enabled."""
    live = live_replicas(environment)
    servers = []
    for slot in Slot.values:
        ports = environment.slot_ports(slot, 1 + len(environment.replica_ports.get(slot, [])))
        for index, port in enumerate(ports):
            servers.append(
                ProxyServer(
                    name=replica_server(slot, index),
                    address=host.address,
                    port=port,
                    enabled=(
                        environment.live_slot == slot and not environment.stopped and index < live
                    ),
                )
            )
    return ProxyBackend(
        name=environment.proxy_backend,
        address=host.address,
        frontend_port=environment.frontend_port,
        servers=tuple(servers),
        health_path=environment.health_path,
        health_host=environment.health_host,
    )


def live_replicas(environment: Environment) -> int:
    """How many containers of the live slot serve on each host: as many as the deployment
    that made it live (finishing, or done) started."""
    if not environment.live_slot:
        return 0
    made_live = (
        environment.deployments.filter(
            slot=environment.live_slot,
            status__in=[DeploymentStatus.FINISHING, DeploymentStatus.SUCCEEDED],
        )
        .exclude(kind=DeploymentKind.STOP)
        .order_by("-created_at", "-id")
        .values_list("replicas", flat=True)
        .first()
    )
    return made_live or 1


def proxy_backends(host: Host) -> list[ProxyBackend]:
    """Every environment on `host` as its proxy should serve it, from the database now.

    By the host's name, which names its proxy, not by the row the caller read some time ago:
    a housekeeper's pass over the hosts takes seconds, and a host row deleted and made again
    meanwhile (removed from Dockyard and added back) would otherwise read as a host with no
    environments, and its proxy would be emptied under the deployments using it.
    """
    return [
        proxy_backend(environment, host)
        for environment in Environment.objects.filter(hosts__name=host.name).order_by("pk")
    ]


@contextmanager
def host_proxy(host: Host, tools: DeployTools) -> Iterator[tuple[ContainerEngine, TrafficProxy]]:
    """An open connection to `host`'s engine and its proxy through it."""
    with tools.engines(host.engine) as engine:
        yield engine, tools.proxy(engine, host)


def proxy_apply(proxy: TrafficProxy, host: Host) -> None:
    """Start or reload `host`'s proxy so it serves its environments as the database says."""
    proxy.apply(lambda: proxy_backends(host))


def proxy_servers_align(proxy: TrafficProxy, host: Host) -> None:
    """Put each environment's servers on `host` in the state the database says, unless a
    deployment is moving them: the live slot ready, the other in maintenance (the proxy
    restarted from an older file, or someone used its runtime API by hand).

    A state is put back only under the environment's servers lock, after checking again that
    no deployment is under way and reading the proxy again: a deployment waits for that lock
    before it changes anything (`proxy_servers_settled`), so this never undoes its switch.
    """
    states = proxy.server_states()
    for environment in Environment.objects.filter(hosts=host).exclude(live_slot=""):
        if not _misaligned(proxy_backend(environment, host), states):
            continue
        with cluster_lock_waited(_servers_lock(environment), seconds=SERVERS_LOCK_SECONDS):
            environment.refresh_from_db()
            under_way = environment.deployments.exclude(status__in=DEPLOYMENT_FINAL_STATES)
            if not environment.live_slot or under_way.exists():
                continue
            current = proxy.server_states()
            for server in proxy_backend(environment, host).servers:
                wanted = _wanted(server)
                found = current.get((environment.proxy_backend, server.name))
                if found is None or found == wanted:
                    continue
                logger.warning(
                    "proxy of %s: %s/%s was %s, the database says %s; restoring",
                    host.name,
                    environment.proxy_backend,
                    server.name,
                    found,
                    wanted,
                )
                proxy.set_server(
                    environment.proxy_backend,
                    server.name,
                    address=server.address,
                    port=server.port,
                    state=wanted,
                )


def proxy_servers_settled(environment: Environment) -> None:
    """Wait until no housekeeper is putting the environment's servers back (a deployment calls
    this before it changes anything; the housekeeper leaves alone an environment being
    deployed, so after this it does until the deployment ends)."""
    with cluster_lock_waited(_servers_lock(environment), seconds=SERVERS_LOCK_SECONDS):
        pass


def _servers_lock(environment: Environment) -> str:
    return f"proxy-servers:{environment.pk}"


def _wanted(server: ProxyServer) -> str:
    return "ready" if server.enabled else "maint"


def _misaligned(backend: ProxyBackend, states: dict[tuple[str, str], str]) -> bool:
    return any(
        states.get((backend.name, server.name)) not in {None, _wanted(server)}
        for server in backend.servers
    )


@dataclass
class ProxiesReport:
    hosts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __str__(self) -> str:
        text = f"kept the proxies of {', '.join(self.hosts) or 'no host'}"
        return text + (f"; problems: {'; '.join(self.problems)}" if self.problems else "")


def proxies_reconcile(tools: DeployTools) -> ProxiesReport:
    """Bring every host's proxy back to what the database says, where something is deployed:
    started (or made again) if it is down or gone, servers' states restored. A host that
    cannot be reached is said, and the others are still done."""
    report = ProxiesReport()
    deployed = Environment.objects.exclude(live_slot="")
    for host in Host.objects.filter(environments__in=deployed).distinct():
        try:
            with host_proxy(host, tools) as (_, proxy):
                proxy_apply(proxy, host)
                proxy_servers_align(proxy, host)
        except (ProxyError, DockerEngineError) as error:
            report.problems.append(f"{host.name}: {error}")
            continue
        report.hosts.append(host.name)
    if report.problems:
        logger.warning("proxies: %s", report)
    return report
