"""Writes for hosts: adding or changing one, giving an environment its hosts; checked and
audited. A host's engine URL decides which machine runs an environment's apps and receives
its secrets, so every change names who made it."""

import ipaddress
from urllib.parse import urlsplit

from django.db import transaction

from audit.actors import Actor
from audit.models import AuditAction
from audit.services import audit_record
from releases.models import Environment, Host
from releases.selectors import active_deployment

ENGINE_SCHEMES = ("unix", "ssh", "tcp")


class HostRefused(Exception):
    """A host or an environment's hosts that cannot be saved, and why."""


def engine_url_problem(url: str) -> str:
    """Why `url` is not an engine URL Dockyard can reach ("" when it is). Pure."""
    if not url:
        return ""  # the deploy worker's own engine
    parts = urlsplit(url)
    if parts.scheme not in ENGINE_SCHEMES:
        return (
            f"engine URL {url!r} must start with unix://, ssh:// or tcp:// "
            "(tcp:// with TLS through DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)"
        )
    if parts.scheme == "unix":
        return "" if parts.path.startswith("/") else f"engine URL {url!r} names no socket path"
    if not parts.hostname:
        return f"engine URL {url!r} names no host"
    if parts.scheme == "tcp" and parts.port is None:
        return f"engine URL {url!r} needs a port (Docker's TLS port is 2376)"
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return f"engine URL {url!r} has a path or query an engine URL does not take"
    return ""


def address_problem(address: str) -> str:
    """Why apps and a proxy cannot listen on `address` ("" when they can). Pure."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"address {address!r} is not an IP address (the host's apps listen on it)"
    if parsed.is_unspecified or parsed.is_multicast:
        return f"address {address!r} is not one address of the host"
    return ""


def host_save(
    *, name: str, engine_url: str, address: str, actor: Actor | None = None
) -> tuple[Host, bool]:
    """Add the host `name`, or change its engine URL and address; whether it was added."""
    for problem in (engine_url_problem(engine_url), address_problem(address)):
        if problem:
            raise HostRefused(problem)
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(name=name).first()
        if host is None:
            host = Host.objects.create(name=name, engine_url=engine_url, address=address)
            audit_record(
                action=AuditAction.HOST_ADDED,
                target=host,
                detail={"engine_url": engine_url, "address": address},
                actor=actor,
            )
            return host, True
        before = {"engine_url": host.engine_url, "address": host.address}
        after = {"engine_url": engine_url, "address": address}
        if before != after:
            busy = [
                str(environment)
                for environment in host.environments.all()
                if active_deployment(environment) is not None
            ]
            if busy:
                raise HostRefused(f"{name} is being deployed to ({', '.join(busy)}); try after")
            Host.objects.filter(pk=host.pk).update(**after)
            host.refresh_from_db()
            audit_record(
                action=AuditAction.HOST_CHANGED,
                target=host,
                detail={"before": before, "after": after},
                actor=actor,
            )
        return host, False


def environment_hosts_set(
    *,
    environment: Environment,
    hosts: list[Host],
    max_parallel: int | None,
    actor: Actor | None = None,
) -> Environment:
    """Give the environment these hosts, switched `max_parallel` at a time (None: the default,
    one for an environment that comes after another, all for the others).

    Refused while it is being deployed, and for hosts that would need another port: ports are
    the environment's, the same on every host, so an outer balancer's config never changes.
    A host added here gets the release that serves with the next deployment.
    """
    if not hosts:
        raise HostRefused(f"{environment} needs at least one host")
    if max_parallel is not None and max_parallel < 1:
        raise HostRefused("max_parallel must be at least 1 (or empty for the default)")
    addresses: dict[str, str] = {}
    for host in hosts:
        other = addresses.setdefault(host.address, host.name)
        if other != host.name:
            raise HostRefused(
                f"{other} and {host.name} share the address {host.address}: their proxies "
                "would bind the same frontend"
            )
    with transaction.atomic():
        locked = Environment.objects.select_for_update().get(pk=environment.pk)
        if active_deployment(locked) is not None:
            raise HostRefused(f"{environment} is being deployed to; try after it ends")
        before = {
            "hosts": sorted(locked.hosts.values_list("name", flat=True)),
            "max_parallel": locked.max_parallel,
        }
        locked.hosts.set(hosts)
        Environment.objects.filter(pk=locked.pk).update(max_parallel=max_parallel)
        after = {"hosts": sorted(host.name for host in hosts), "max_parallel": max_parallel}
        if before != after:
            audit_record(
                action=AuditAction.ENVIRONMENT_HOSTS_CHANGED,
                target=locked,
                detail={"before": before, "after": after},
                actor=actor,
            )
    environment.refresh_from_db()
    return environment
