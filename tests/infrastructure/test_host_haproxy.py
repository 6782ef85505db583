"""A host's HAProxy as Dockyard runs it: a container of its own on the host's network, driven
through the host's Docker engine (config written with the archive API, runtime API commands
through `docker exec`), against the real engine and HAProxy."""

import http.server
import socket
import threading
from collections.abc import Iterator

import docker
import pytest
import requests
from django.conf import settings

from infrastructure.docker_engine import DockerEngine
from infrastructure.haproxy import (
    ADMIN_SOCKET,
    CONFIG_PATH,
    HostHAProxy,
    ProxyBackend,
    ProxyError,
    ProxyServer,
    proxy_container_name,
    render_config,
)

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ADDRESS = "127.0.0.2"
FRONTEND = settings.DOCKYARD_FRONTEND_PORTS[-1]
BLUE, GREEN = settings.DOCKYARD_SLOT_PORTS[-2], settings.DOCKYARD_SLOT_PORTS[-1]


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.body  # type: ignore[attr-defined]
        status = 200 if self.path != "/healthz" or body != "sick" else 503
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def slots() -> Iterator[dict[str, http.server.ThreadingHTTPServer]]:
    servers = {}
    for name, port in (("blue", BLUE), ("green", GREEN)):
        server = http.server.ThreadingHTTPServer((ADDRESS, port), Answer)
        server.body = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy() -> Iterator[HostHAProxy]:
    with DockerEngine(settings.DOCKER_HOST) as engine:
        proxy = HostHAProxy(engine, host="test-host")
        yield proxy
        proxy.stop()


def environment(live: str = "blue", *, port: int = FRONTEND, name: str = "be_t") -> ProxyBackend:
    return ProxyBackend(
        name=name,
        address=ADDRESS,
        frontend_port=port,
        servers=(
            ProxyServer("blue", ADDRESS, BLUE, live == "blue"),
            ProxyServer("green", ADDRESS, GREEN, live == "green"),
        ),
        health_path="/healthz",
    )


def served() -> str:
    return requests.get(f"http://{ADDRESS}:{FRONTEND}/", timeout=5).text


def test_the_proxy_runs_as_a_container_on_the_host_network_and_serves_the_live_slot(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])

    assert served() == "blue"
    with DockerEngine(settings.DOCKER_HOST) as engine:
        assert engine.container_state(proxy_container_name("test-host")) == "running"
    assert proxy.server_states() == {("be_t", "blue"): "ready", ("be_t", "green"): "maint"}
    # Its request log is bounded, and written by the engine as it takes it in: a line HAProxy
    # could not write is one it counts.
    client = docker.DockerClient(base_url=settings.DOCKER_HOST)
    try:
        log_config = client.api.inspect_container(proxy_container_name("test-host"))["HostConfig"][
            "LogConfig"
        ]
    finally:
        client.close()
    assert log_config["Config"].get("mode", "blocking") == "blocking"
    assert log_config["Config"]["max-size"] == "10m"
    assert proxy.log_lines_dropped() == 0


def test_a_switch_through_the_runtime_api_moves_traffic_without_a_reload(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])
    pid_before = proxy.command("show info").split("Pid: ")[1].split("\n")[0]

    proxy.set_server("be_t", "green", address=ADDRESS, port=GREEN, state="ready")
    proxy.set_server("be_t", "blue", state="maint")

    assert served() == "green"
    assert proxy.command("show info").split("Pid: ")[1].split("\n")[0] == pid_before


def test_a_slot_is_healthy_only_once_haproxy_has_seen_its_health_path_answer(
    proxy: HostHAProxy, slots: dict[str, http.server.ThreadingHTTPServer]
) -> None:
    proxy.apply(lambda: [environment()])
    slots["green"].body = "sick"  # type: ignore[attr-defined]

    proxy.health_check_start("be_t", "green", address=ADDRESS, port=GREEN)
    sick = proxy.health("be_t", "green")
    slots["green"].body = "green"  # type: ignore[attr-defined]
    for _ in range(100):
        if proxy.health("be_t", "green").healthy:
            break
    healthy = proxy.health("be_t", "green")

    assert not sick.healthy
    assert healthy.healthy, healthy.detail
    assert served() == "blue"  # checking a slot sends it no traffic


def test_a_removed_proxy_is_made_again_as_the_database_says_and_a_new_frontend_reloads(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])
    proxy.stop()

    proxy.apply(lambda: [environment(live="green")])
    assert served() == "green"

    second = FRONTEND - 1
    proxy.apply(lambda: [environment(live="green"), environment(port=second, name="be_u")])
    assert requests.get(f"http://{ADDRESS}:{second}/", timeout=5).text == "blue"
    assert served() == "green"


def test_a_second_proxy_on_a_taken_frontend_fails_saying_so_instead_of_sharing_it(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])

    with DockerEngine(settings.DOCKER_HOST) as engine:
        intruder = HostHAProxy(engine, host="test-host-2")
        try:
            with pytest.raises(ProxyError, match="cannot bind"):
                intruder.apply(lambda: [environment(live="green")])
        finally:
            intruder.stop()
    assert served() == "blue"


def test_a_reload_haproxy_could_not_do_is_said_and_the_old_config_keeps_serving(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])
    taken = FRONTEND - 2
    with socket.socket() as squatter:
        squatter.bind((ADDRESS, taken))
        squatter.listen()

        with pytest.raises(ProxyError, match="did not take its new config"):
            proxy.apply(lambda: [environment(), environment(port=taken, name="be_u")])

    assert served() == "blue"
    # Asked again once the port is free, it reloads (the failed attempt was not taken as done).
    proxy.apply(lambda: [environment(), environment(port=taken, name="be_u")])
    assert requests.get(f"http://{ADDRESS}:{taken}/", timeout=5).text == "blue"


def test_a_process_that_missed_its_reload_is_reloaded_even_when_its_file_is_current(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])
    second = FRONTEND - 3
    both = [environment(), environment(port=second, name="be_v")]
    # The file already says both environments (written by hand, say); the running process
    # serves only the first.
    proxy.engine.file_put(
        proxy_container_name("test-host"),
        CONFIG_PATH,
        render_config(both, admin_socket=ADMIN_SOCKET).encode(),
    )

    proxy.apply(lambda: both)

    assert requests.get(f"http://{ADDRESS}:{second}/", timeout=5).text == "blue"


def test_remembering_switches_while_an_environment_was_added_reloads_to_serve_both(
    proxy: HostHAProxy, slots: dict[str, object]
) -> None:
    proxy.apply(lambda: [environment()])
    second = FRONTEND - 3
    both = [environment(), environment(port=second, name="be_v")]

    proxy.remember(lambda: both)

    # Served at once: a file the process did not load would pass the next apply for done.
    assert requests.get(f"http://{ADDRESS}:{second}/", timeout=5).text == "blue"
    proxy.set_server("be_v", "blue", state="drain")
