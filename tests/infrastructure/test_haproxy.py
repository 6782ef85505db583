"""The HAProxy configuration Dockyard writes from its database, and what counts as a change of
topology (a reload) rather than of a server's state (the runtime API)."""

from pathlib import Path

import pytest

from infrastructure.haproxy import (
    ProxyBackend,
    ProxyError,
    ProxyServer,
    render_config,
    topology,
)


def backend(
    name: str, port: int, live: str = "blue", *, path: str = "/", host: str = ""
) -> ProxyBackend:
    return ProxyBackend(
        name=name,
        address="127.0.0.2",
        frontend_port=port,
        servers=(
            ProxyServer(name="blue", address="127.0.0.2", port=port + 100, enabled=live == "blue"),
            ProxyServer(
                name="green", address="127.0.0.2", port=port + 101, enabled=live == "green"
            ),
        ),
        health_path=path,
        health_host=host,
    )


def test_each_environment_is_a_frontend_on_its_address_and_a_backend_of_two_slots() -> None:
    config = render_config([backend("be_2", 9101), backend("be_1", 9100)], admin_socket=Path("/s"))

    assert "    stats socket /s mode 600 level admin expose-fd listeners" in config
    # Sorted by name: the same database makes the same file.
    assert config.index("frontend fe_be_1") < config.index("frontend fe_be_2")
    assert (
        "frontend fe_be_1\n    bind 127.0.0.2:9100\n    default_backend be_1\n\n"
        "backend be_1\n    server blue 127.0.0.2:9200\n    server green 127.0.0.2:9201 disabled\n"
    ) in config


def test_a_connection_refused_by_a_stopping_slot_is_retried_on_the_other() -> None:
    config = render_config([backend("be_1", 9100)], admin_socket=Path("/s"))
    assert "option redispatch" in config
    assert "retry-on conn-failure empty-response response-timeout" in config
    # The servers that take traffic are not health-checked: a checked server would start
    # DOWN after each switch; a new slot is checked before it takes traffic (chk_ backend).
    serving = config[config.index("backend be_1") : config.index("backend chk_be_1")]
    assert " check" not in serving


def test_each_environment_has_a_check_backend_asking_its_health_path_that_no_frontend_uses() -> (
    None
):
    config = render_config(
        [backend("be_1", 9100, path="/healthz", host="app.example")], admin_socket=Path("/s")
    )

    check = config[config.index("backend chk_be_1") :]
    assert "    option httpchk\n" in check
    assert "    http-check send meth GET uri /healthz hdr Host app.example\n" in check
    assert "    default-server inter 100 fall 1 rise 1\n" in check
    # Unchecked until a deployment asks (runtime API), so an idle slot raises no alarms.
    assert "    server green 127.0.0.2:9201 check disabled\n" in check
    assert "default_backend chk_" not in config


@pytest.mark.parametrize("path", ["/health check", "/x#y", '/"', ""])
def test_a_health_path_haproxy_would_misread_is_refused(path: str) -> None:
    with pytest.raises(ProxyError, match="cannot go into HAProxy's configuration"):
        render_config([backend("be_1", 9100, path=path)], admin_socket=Path("/s"))


def test_switching_slots_changes_the_file_but_not_its_topology() -> None:
    blue = render_config([backend("be_1", 9100, live="blue")], admin_socket=Path("/s"))
    green = render_config([backend("be_1", 9100, live="green")], admin_socket=Path("/s"))
    added = render_config([backend("be_1", 9100), backend("be_2", 9101)], admin_socket=Path("/s"))

    assert blue != green
    assert topology(blue) == topology(green)
    assert topology(blue) != topology(added)
