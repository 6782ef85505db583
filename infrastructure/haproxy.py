"""The HAProxy adapter: the config Dockyard generates, each host's HAProxy, its runtime API.

The only module that talks to HAProxy. Each host runs one, as a container of Dockyard's on the
host's network, started and repaired through the host's Docker engine (so a worker on any
machine drives any host, and restarting a worker drops no frontend). Every switch of traffic
goes through the runtime API (`set server ... addr/state`), reached with `docker exec` through
the engine, never over the network: the admin socket stays a file inside the container, out of
reach of the apps on the host. The process is reloaded (master-worker, seamless) only when
frontends are added or removed. Errors become ProxyError.
"""

import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from django.conf import settings

from infrastructure.cluster_locks import cluster_lock_waited
from infrastructure.docker_engine import MANAGED_LABEL, DockerEngine, DockerEngineError

# Inside the proxy container.
HAPROXY = "/usr/sbin/haproxy"
CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
ADMIN_SOCKET = Path("/run/haproxy/admin.sock")
MASTER_SOCKET = "/run/haproxy/master.sock"
PROXY_LABEL = "dockyard.proxy"


def proxy_container_name(host: str) -> str:
    """The name of this installation's proxy container for `host`: two installations sharing
    an engine (the test suite beside `make up`), or two hosts on one engine (two addresses of
    one machine), each keep their own."""
    return f"dockyard-proxy-{settings.DOCKYARD_INSTANCE}-{host}"


# What the image Dockyard builds of this machine's own binaries holds: HAProxy, socat (the
# runtime API's client) and a static busybox as /bin/sh (for `docker exec`), with the
# libraries they link. An image of one's own (DOCKYARD_PROXY_IMAGE) needs the same three.
PROXY_BINARIES = {
    "/usr/sbin/haproxy": "/usr/sbin/haproxy",
    "/usr/bin/socat": "/usr/bin/socat",
    "/bin/sh": "/bin/busybox",
}
# How often, and how patiently, a new slot's health is checked (through the check backend).
CHECK_INTERVAL_MS = 100
ANSWER_TIMEOUT_SECONDS = 15
# Each request HAProxy passes is one line of its output (the container's log): backend, server,
# status, Ta (milliseconds from the request's first byte to the response's last).
REQUEST_LOG_TAG = "dockyard-request"
REQUEST_LOG_FORMAT = f"{REQUEST_LOG_TAG} %b %s %ST %Ta"


class ProxyError(Exception):
    """HAProxy could not be started, reloaded or commanded; the message says which and why."""


@dataclass(frozen=True)
class ProxyServer:
    name: str
    address: str
    port: int
    enabled: bool


@dataclass(frozen=True)
class ProxyBackend:
    """One environment on one host: a frontend on address:frontend_port and its two slots."""

    name: str
    address: str
    frontend_port: int
    servers: tuple[ProxyServer, ...]
    # What a new slot must answer before it takes traffic (its check backend asks it).
    health_path: str = "/"
    health_host: str = ""


@dataclass(frozen=True)
class ProxiedRequest:
    """One request as a host's HAProxy logged it."""

    at: datetime
    backend: str
    # The server that answered ("" when none did: HAProxy answered itself, a 503 say).
    server: str
    # The HTTP status sent to the client; -1 when none was (the client went away).
    status: int
    # HAProxy's Ta timer, in milliseconds (-1 when the request did not complete).
    total_ms: int


def proxied_requests(lines: Iterable[tuple[datetime, str]]) -> list[ProxiedRequest]:
    """The requests among an HAProxy's timestamped output lines (its warnings and anything
    else are skipped). Pure."""
    requests = []
    for at, line in lines:
        words = line.split()
        if len(words) != 5 or words[0] != REQUEST_LOG_TAG:
            continue
        _, backend, server, status, total = words
        try:
            requests.append(
                ProxiedRequest(
                    at=at,
                    backend=backend,
                    server="" if server.startswith("<") else server,
                    status=int(status),
                    total_ms=int(total),
                )
            )
        except ValueError:
            continue
    return requests


@dataclass(frozen=True)
class SlotHealth:
    healthy: bool
    detail: str


def check_backend(backend: str) -> str:
    """The name of the backend whose servers HAProxy health-checks for `backend`."""
    return f"chk_{backend}"


def render_config(backends: list[ProxyBackend], *, admin_socket: Path) -> str:
    """HAProxy's configuration for these environments. Pure.

    The servers that take traffic carry no health `check`: a new slot is checked before it
    takes traffic, and a server HAProxy checked would start DOWN after each switch. That check
    is HAProxy's own, in a backend of its own per environment (`chk_<backend>`) that no
    frontend uses, its servers in maintenance (unchecked) until a deployment asks. Connection
    failures are retried on the other slot (redispatch), so a request that lands on a slot in
    the instant it stops is served by the other one, not failed.
    """
    lines = [
        "# Generated by Dockyard from its database; edits are overwritten.",
        "global",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        # A frontend another process already binds (another installation's proxy, a stale
        # one) must fail loudly, not share the port's connections with it; reloads take the
        # listeners over through the socket above, so they need no SO_REUSEPORT.
        "    noreuseport",
        "    stats timeout 10s",
        # The request log is the container's output, which Docker keeps (bounded) for the
        # collector: per-request timers give true percentiles, which `show stat` cannot.
        "    log stdout format raw local0 info",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        f'    log-format "{REQUEST_LOG_FORMAT}"',
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 2s",
        "    option redispatch",
        "    retries 3",
        "    retry-on conn-failure empty-response response-timeout",
    ]
    for backend in sorted(backends, key=lambda b: b.name):
        lines += [
            "",
            f"frontend fe_{backend.name}",
            f"    bind {backend.address}:{backend.frontend_port}",
            f"    default_backend {backend.name}",
            "",
            f"backend {backend.name}",
        ]
        for server in backend.servers:
            state = "" if server.enabled else " disabled"
            lines.append(f"    server {server.name} {server.address}:{server.port}{state}")
        check = f"http-check send meth GET uri {_config_word(backend.health_path)}"
        if backend.health_host:
            check += f" hdr Host {_config_word(backend.health_host)}"
        lines += [
            "",
            f"backend {check_backend(backend.name)}",
            "    option httpchk",
            f"    {check}",
            f"    default-server inter {CHECK_INTERVAL_MS} fall 1 rise 1",
        ]
        for server in backend.servers:
            lines.append(f"    server {server.name} {server.address}:{server.port} check disabled")
    return "\n".join(lines) + "\n"


def _config_word(value: str) -> str:
    # Paths and host names come from dockyard.yml: one word, nothing HAProxy would parse.
    if not value or any(character.isspace() or character in "\"'\\#" for character in value):
        raise ProxyError(f"{value!r} cannot go into HAProxy's configuration")
    return value


def topology(config: str) -> str:
    """The config without the servers' enabled/disabled state: what a reload would change."""
    return config.replace(" check disabled\n", " check\n").replace(" disabled\n", "\n")


def servers_added_only(previous: str, config: str) -> bool:
    """Whether `config` differs from `previous` only by servers it adds (what the runtime API
    can do without a reload). Pure."""
    before, after = topology(previous).splitlines(), topology(config).splitlines()
    if [line for line in before if not _is_server(line)] != [
        line for line in after if not _is_server(line)
    ]:
        return False
    return {line for line in before if _is_server(line)} < {
        line for line in after if _is_server(line)
    }


def _is_server(line: str) -> bool:
    return line.startswith("    server ")


Wanted = Callable[[], list[ProxyBackend]]


class TrafficProxy(Protocol):
    """What deployments need of a host's proxy in front of its environments. HostHAProxy is
    the real one; tests of the deploy state machine pass an in-memory stand-in
    (tests/fakes.py)."""

    # `wanted` is asked for the environments once the host's proxy is this caller's alone: what
    # it reads (the database) cannot be overtaken by another worker's apply while it waits.
    def apply(self, wanted: Wanted) -> None: ...

    def remember(self, wanted: Wanted) -> None: ...

    def set_server(
        self,
        backend: str,
        server: str,
        *,
        address: str | None = None,
        port: int | None = None,
        state: str,
    ) -> None: ...

    def switch(
        self,
        backend: str,
        *,
        to: Sequence[tuple[str, int]],
        address: str,
        away_from: Sequence[str],
    ) -> None:
        """Point each (server, port) of `to` at address:port and set it ready, and set the
        servers of `away_from` draining, at once (none when nothing served before)."""

    def sessions(self, backend: str, server: str) -> int: ...

    def server_states(self) -> dict[tuple[str, str], str]: ...

    def health_check_start(self, backend: str, server: str, *, address: str, port: int) -> None:
        """Have HAProxy check `server` of `backend` at address:port from now on, counting it
        unhealthy until a check passes."""

    def health(self, backend: str, server: str) -> SlotHealth:
        """Whether a check started by health_check_start has passed, and what it last saw."""

    def health_check_stop(self, backend: str, server: str) -> None: ...

    def requests_since(self, since: datetime, until: datetime) -> list[ProxiedRequest]:
        """The requests the proxy passed after `since`, up to `until` (its request log)."""

    def log_lines_dropped(self) -> int:
        """How many lines of its request log the serving proxy process could not write."""


def proxy_image_files() -> dict[str, Path]:
    """The files of the proxy image: this machine's HAProxy, socat and busybox, and every
    library they load (as `ldd` lists them), at the paths they have here."""
    files: dict[str, Path] = {}
    for target, source in PROXY_BINARIES.items():
        if not Path(source).is_file():
            raise ProxyError(
                f"{source} is missing: install Debian's haproxy, socat and busybox-static (the "
                "hosts' proxy image is made of them), or set DOCKYARD_PROXY_IMAGE"
            )
        files[target] = Path(source)
        for library in _libraries(source):
            files[library] = Path(library).resolve()
    return files


def _libraries(binary: str) -> list[str]:
    listed = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    if listed.returncode != 0:  # static: nothing to add
        return []
    found = []
    for line in listed.stdout.splitlines():
        words = line.split()
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0] if words else ""
        if path.startswith("/"):
            found.append(path)
    return found


class HostHAProxy:
    """The HAProxy of one host: a container on the host's network, driven through `engine`
    (an open connection to that host's Docker engine)."""

    def __init__(self, engine: DockerEngine, *, host: str) -> None:
        self.engine = engine
        self.host = host
        # (backend, server) -> what its last finished health check saw.
        self._last_seen: dict[tuple[str, str], str] = {}

    def apply(self, wanted: Wanted) -> None:
        """Make the host's proxy serve exactly the `wanted` environments: started (or made) if
        it is down, reloaded if its frontends changed, left alone otherwise (cheap to call)."""
        with self._locked():
            backends = wanted()
            config = render_config(backends, admin_socket=ADMIN_SOCKET)
            container, fresh = self._container(config)
            if fresh:
                self._wait_until_answering(container)
                return
            previous = self._read(container)
            # The file alone is not proof: the process must be serving it too (a process that
            # missed a reload would refuse every command about the new environment).
            if topology(previous) == topology(config) and self._serves(backends):
                if previous != config:
                    self._write(container, config)
                return
            if servers_added_only(previous, config) and self._serves(backends):
                # New replicas' servers: added through the runtime API, no reload (a reload
                # closes the old process's idle keep-alive connections under their clients).
                self._servers_add(backends)
                self._write(container, config)
                return
            self._reload(container, previous, config, backends)

    def remember(self, wanted: Wanted) -> None:
        """Rewrite the config file after runtime switches, without touching the process: a
        restart of the container begins as the database says. If the environments changed
        meanwhile (another one added), the process is reloaded with them: a file the running
        process does not serve would pass the next apply for done."""
        with self._locked():
            backends = wanted()
            config = render_config(backends, admin_socket=ADMIN_SOCKET)
            container = self._running_container()
            previous = self._read(container)
            if topology(previous) == topology(config):
                self._write(container, config)
            else:
                self._reload(container, previous, config, backends)

    def _servers_add(self, backends: list[ProxyBackend]) -> None:
        """Add to the running process the servers of `backends` it does not have yet, each in
        its backend and its check backend (checked, in maintenance until a deployment asks)."""
        present = {(row.get("pxname"), row.get("svname")) for row in self._stat_rows()}
        commands = []
        for backend in backends:
            check = check_backend(backend.name)
            for server in backend.servers:
                where = f"{server.address}:{server.port}"
                if (backend.name, server.name) not in present:
                    commands.append(f"add server {backend.name}/{server.name} {where}")
                    if server.enabled:
                        commands.append(f"set server {backend.name}/{server.name} state ready")
                if (check, server.name) not in present:
                    commands += [
                        f"add server {check}/{server.name} {where} check inter "
                        f"{CHECK_INTERVAL_MS} fall 1 rise 1",
                        # Dynamic servers' checks start disabled.
                        f"enable health {check}/{server.name}",
                    ]
        for answer in self.commands(commands) if commands else []:
            self._expect_ok(answer, "a new server")

    def _reload(
        self, container: str, previous: str, config: str, backends: list[ProxyBackend]
    ) -> None:
        self._write_checked(container, config)
        self.engine.container_signal(container, "SIGUSR2")  # master-worker: seamless
        time.sleep(0.2)
        try:
            self._wait_until_serving(container, backends)
        except ProxyError:
            # The old process serves on: its file must say so, or the next apply would find
            # the new one there and take it for done.
            self._write(container, previous)
            raise

    def set_server(
        self,
        backend: str,
        server: str,
        *,
        address: str | None = None,
        port: int | None = None,
        state: str,
    ) -> None:
        """Runtime API: point `server` at address:port (when given) and set it ready, drain or
        maint."""
        commands = []
        if address is not None and port is not None:
            commands.append(f"set server {backend}/{server} addr {address} port {port}")
        commands.append(f"set server {backend}/{server} state {state}")
        for answer in self.commands(commands):
            self._expect_ok(answer, f"{backend}/{server} {state}")

    def switch(
        self,
        backend: str,
        *,
        to: Sequence[tuple[str, int]],
        address: str,
        away_from: Sequence[str],
    ) -> None:
        # One exec, one round trip to the host: the new slot takes traffic in the same breath
        # as the old one stops taking new requests.
        commands = []
        for server, port in to:
            commands += [
                f"set server {backend}/{server} addr {address} port {port}",
                f"set server {backend}/{server} state ready",
            ]
        commands += [f"set server {backend}/{server} state drain" for server in away_from]
        names = ", ".join(server for server, _ in to)
        for answer in self.commands(commands):
            self._expect_ok(answer, f"the switch of {backend} to {names}")

    def sessions(self, backend: str, server: str) -> int:
        """The server's current sessions (requests still being served by it)."""
        for row in self._stat_rows():
            if row.get("pxname") == backend and row.get("svname") == server:
                return int(row.get("scur") or 0)
        raise ProxyError(f"no server {backend}/{server} in the HAProxy of {self.host}")

    def server_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> "ready", "drain" or "maint", as the running proxy has them
        (the check backends left out)."""
        states = {}
        for row in self._stat_rows():
            name, server = row.get("pxname", ""), row.get("svname", "")
            if server in {"FRONTEND", "BACKEND"} or name.startswith("chk_"):
                continue
            # Status words: UP, DOWN, "no check" (ready, not health-checked), MAINT, DRAIN.
            word = (row.get("status") or "").split(" ")[0].upper()
            states[(name, server)] = {"MAINT": "maint", "DRAIN": "drain"}.get(word, "ready")
        return states

    def health_check_start(self, backend: str, server: str, *, address: str, port: int) -> None:
        # Ready, then forced down: HAProxy keeps the last check's result across maintenance,
        # and only a check that passes from now on may say the new slot is healthy.
        name = f"{check_backend(backend)}/{server}"
        answers = self.commands(
            [
                f"set server {name} addr {address} port {port}",
                f"set server {name} state ready",
                f"set server {name} health down",
            ]
        )
        for answer in answers:
            self._expect_ok(answer, f"health check of {name}")

    def health(self, backend: str, server: str) -> SlotHealth:
        for row in self._stat_rows():
            if row.get("pxname") == check_backend(backend) and row.get("svname") == server:
                status = (row.get("status") or "").upper()
                verdict = row.get("check_status") or ""
                # e.g. "L7STS 404 Not Found": HAProxy's verdict, the status, its reason. While
                # a check runs ("* L7STS", code 0) the last one that ended says more.
                seen = " ".join(
                    part
                    for part in (verdict, row.get("check_code"), row.get("last_chk"))
                    if part and part != "0"
                )
                if verdict.startswith("*"):
                    seen = self._last_seen.get((backend, server), seen)
                else:
                    self._last_seen[(backend, server)] = seen
                return SlotHealth(
                    healthy=status.startswith("UP"),
                    detail=f"HAProxy on {self.host}: {status or 'unknown'}"
                    + (f" ({seen})" if seen else ""),
                )
        raise ProxyError(f"no check for {backend}/{server} in the HAProxy of {self.host}")

    def health_check_stop(self, backend: str, server: str) -> None:
        name = f"{check_backend(backend)}/{server}"
        for answer in self.commands([f"set server {name} state maint"]):
            self._expect_ok(answer, f"health check of {name}")

    def requests_since(self, since: datetime, until: datetime) -> list[ProxiedRequest]:
        lines = self.engine.container_log_lines(
            proxy_container_name(self.host), stream="stdout", since=since, until=until, tail=None
        )
        # The engine's `since` includes a line stamped exactly then: the last read counted it.
        return [request for request in proxied_requests(lines) if request.at > since]

    def log_lines_dropped(self) -> int:
        # HAProxy writes its log without waiting (its output is non-blocking): a line that
        # finds the pipe to the engine full is dropped, and counted in DroppedLogs.
        info = self.command("show info")
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name == "DroppedLogs":
                return int(value)
        raise ProxyError(f"HAProxy of {self.host}: no DroppedLogs in its `show info`")

    def running(self) -> bool:
        try:
            self.command("show info")
        except (ProxyError, DockerEngineError):
            return False
        return True

    def command(self, line: str) -> str:
        return self.commands([line])[0]

    def commands(self, lines: list[str]) -> list[str]:
        """Send runtime API commands in one exec (one round trip to the host): their answers."""
        container = self._running_container()
        separator = "\x1e"  # answers are split on it; HAProxy never writes it
        # Through the master's socket, to "@1", the newest worker: just after a reload the old
        # worker may still answer on the admin socket, with the old config's backends.
        script = " ; ".join(
            f"printf '%s\\n' {shlex.quote('@1 ' + line)} | /usr/bin/socat stdio "
            f"unix-connect:{MASTER_SOCKET}; printf '{separator}'"
            for line in lines
        )
        code, output = self.engine.container_exec(container, ["/bin/sh", "-c", script])
        if code != 0:
            raise ProxyError(f"HAProxy of {self.host}: its runtime API did not answer: {output}")
        return output.split(separator)[: len(lines)]

    def stop(self) -> None:
        self.engine.remove_containers(
            labels={PROXY_LABEL: self.host, MANAGED_LABEL: settings.DOCKYARD_INSTANCE}
        )

    def _stat_rows(self) -> list[dict[str, str]]:
        for _ in range(3):
            lines = self.command("show stat").splitlines()
            if lines and lines[0].startswith("# "):
                break
            # The master's CLI now and then answers nothing (the deploy fleet tests saw it
            # under load): asked again, it answers; a real failure answers nothing each time.
            time.sleep(0.1)
        else:
            raise ProxyError(f"HAProxy of {self.host} answered 'show stat' with {lines[:1]!r}")
        header = lines[0][2:].split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]

    def _container(self, config: str) -> tuple[str, bool]:
        return self.engine.daemon_container_ensure(
            name=proxy_container_name(self.host),
            image=self._image(),
            command=[HAPROXY, "-W", "-db", "-S", f"{MASTER_SOCKET},mode,600", "-f", CONFIG_PATH],
            labels={PROXY_LABEL: self.host},
            files={CONFIG_PATH: config.encode()},
            directories=(str(ADMIN_SOCKET.parent),),
        )

    def _running_container(self) -> str:
        container = self.engine.container_state(proxy_container_name(self.host))
        if container != "running":
            raise ProxyError(f"the HAProxy of {self.host} is {container or 'not there'}")
        return proxy_container_name(self.host)

    def _image(self) -> str:
        if settings.DOCKYARD_PROXY_IMAGE:
            self.engine.ensure_image(
                reference=settings.DOCKYARD_PROXY_IMAGE, on_output=lambda _: None
            )
            return str(settings.DOCKYARD_PROXY_IMAGE)
        return self.engine.image_from_files("dockyard/haproxy", proxy_image_files())

    def _read(self, container: str) -> str:
        content = self.engine.file_get(container, CONFIG_PATH)
        return content.decode() if content is not None else ""

    def _write(self, container: str, config: str) -> None:
        self.engine.file_put(container, CONFIG_PATH, config.encode())

    def _write_checked(self, container: str, config: str) -> None:
        draft = CONFIG_PATH + ".new"
        self.engine.file_put(container, draft, config.encode())
        code, output = self.engine.container_exec(container, [HAPROXY, "-c", "-q", "-f", draft])
        if code != 0:
            raise ProxyError(f"generated HAProxy config is invalid: {output.strip()[-500:]}")
        self._write(container, config)

    def _wait_until_answering(self, container: str) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
        while not self.running():
            if time.monotonic() > deadline:
                logs = self.engine.container_logs(container, tail=20).strip()
                raise ProxyError(f"the HAProxy of {self.host} does not answer: {logs[-500:]}")
            time.sleep(0.05)

    def _serves(self, backends: list[ProxyBackend]) -> bool:
        try:
            serving = {row.get("pxname", "") for row in self._stat_rows()}
        except (ProxyError, DockerEngineError):
            return False
        return {backend.name for backend in backends} <= serving

    def _wait_until_serving(self, container: str, backends: list[ProxyBackend]) -> None:
        """Until the process answering is one that loaded this config: a reload HAProxy could
        not do leaves the old process serving the old config, saying nothing to its caller."""
        wanted = {backend.name for backend in backends}
        deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
        while True:
            try:
                serving = {row.get("pxname", "") for row in self._stat_rows()}
            except (ProxyError, DockerEngineError):
                serving = set()
            if wanted <= serving:
                return
            if time.monotonic() > deadline:
                logs = self.engine.container_logs(container, tail=20).strip()
                missing = ", ".join(sorted(wanted - serving))
                raise ProxyError(
                    f"the HAProxy of {self.host} did not take its new config (no {missing}): "
                    f"{logs[-500:]}"
                )
            time.sleep(0.05)

    def _expect_ok(self, answer: str, what: str) -> None:
        # The runtime API answers nothing (or a confirmation) on success, a message otherwise.
        text = answer.strip()
        confirmations = (
            "IP changed from",
            "no need to change the addr",
            "port changed from",
            "New server registered",
        )
        if text and not text.startswith(confirmations):
            raise ProxyError(f"HAProxy of {self.host} refused {what}: {text}")

    def _locked(self) -> AbstractContextManager[None]:
        # Several workers may drive one host: one rewrites its config at a time.
        return cluster_lock_waited(f"proxy:{self.host}", seconds=60)
