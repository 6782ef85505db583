"""docker-compose.yml describes a production-like install that compose itself accepts."""

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.environment import env_database, env_host_port, env_url

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_SOCKET = "/var/run/docker.sock"
SECRETS = {
    "DOCKYARD_SECRET_KEY": "k" * 40,
    "DOCKYARD_POSTGRES_PASSWORD": "p" * 48,
    "DOCKYARD_REDIS_PASSWORD": "r" * 48,
    "DOCKYARD_REGISTRY_PASSWORD": "g" * 48,
}
# Runs once and exits: no healthcheck, no restart.
ONE_SHOT = {"registry-login"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The configuration as docker-compose resolves it (anchors, variables, defaults)."""
    completed = subprocess.run(
        ["docker-compose", "--file", str(COMPOSE_FILE), "config"],
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return yaml.safe_load(completed.stdout)


def test_it_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "registry-login",
        "registry",
        "web",
        "worker",
        "deployer",
    }


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_only_the_workers_mount_the_docker_socket(compose: dict[str, Any]) -> None:
    mounting = {
        name
        for name, service in compose["services"].items()
        for volume in service.get("volumes", [])
        if DOCKER_SOCKET in str(volume)
    }
    assert mounting == {"worker", "deployer"}


def test_builds_and_deployments_have_workers_of_their_own_and_no_worker_runs_haproxy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["worker"]["environment"]["DOCKYARD_WORKER_ROLES"] == "build"
    assert services["deployer"]["environment"]["DOCKYARD_WORKER_ROLES"] == "deploy"
    # Each deploy host's HAProxy is a container Dockyard starts there: restarting a worker
    # must not take a frontend down with it.
    for name, service in services.items():
        assert "haproxy" not in " ".join(service.get("command") or []), name
    ssh = [v for v in services["deployer"]["volumes"] if "/root/.ssh" in str(v)]
    assert ssh and str(ssh[0]).endswith(":ro")


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name in ("postgres", "redis", "registry", "worker"):
        sources = {str(volume).split(":")[0] for volume in compose["services"][name]["volumes"]}
        assert sources & named, f"{name} keeps its state in no named volume"


def test_web_and_worker_start_after_their_dependencies_are_healthy(compose: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_web_and_worker_settings_are_ones_dockyard_accepts(compose: dict[str, Any]) -> None:
    for name in ("web", "worker", "deployer"):
        environment = compose["services"][name]["environment"]
        env_database("DATABASE_URL", "", environ=environment)
        env_url("REDIS_URL", "", schemes={"redis"}, environ=environment)
        env_host_port("DOCKYARD_REGISTRY", "", environ=environment)
        assert len(environment["DOCKYARD_SECRET_KEY"]) >= 32


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_it_refuses_to_start_without_each_of_its_secrets(missing: str) -> None:
    env = {k: v for k, v in {**os.environ, **SECRETS}.items() if k != missing}
    completed = subprocess.run(
        ["docker-compose", "--file", str(COMPOSE_FILE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert missing in completed.stderr


def test_postgres_and_redis_published_on_loopback_take_the_password_dockyard_uses(
    compose: dict[str, Any],
) -> None:
    # Deployed apps share the host's loopback: the published ports must not be open doors.
    services = compose["services"]
    assert (
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        == SECRETS["DOCKYARD_POSTGRES_PASSWORD"]
    )
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == SECRETS["DOCKYARD_REDIS_PASSWORD"]
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        database = env_database("DATABASE_URL", "", environ=environment)
        assert database["PASSWORD"] == SECRETS["DOCKYARD_POSTGRES_PASSWORD"]
        redis_url = urlsplit(env_url("REDIS_URL", "", schemes={"redis"}, environ=environment))
        assert redis_url.password == SECRETS["DOCKYARD_REDIS_PASSWORD"]


def test_the_workers_are_on_the_host_network_where_the_registry_address_means_the_same(
    compose: dict[str, Any],
) -> None:
    # The engine pushes to DOCKYARD_REGISTRY on the host; the workers talk to the registry's
    # API at that same address.
    for name in ("worker", "deployer"):
        assert compose["services"][name]["network_mode"] == "host"


def published_on(mapping: str | dict[str, Any]) -> tuple[str, int]:
    """(host address, host port) of a port mapping, short ("ip:port:target/tcp") or long."""
    if isinstance(mapping, dict):
        return str(mapping.get("host_ip", "0.0.0.0")), int(mapping["published"])
    host_ip, published, _target = mapping.split("/")[0].rsplit(":", 2)
    return host_ip, int(published)


def test_the_worker_reaches_postgres_and_redis_where_they_are_published_on_loopback(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    environment = services["worker"]["environment"]
    database = env_database("DATABASE_URL", "", environ=environment)
    redis_url = urlsplit(env_url("REDIS_URL", "", schemes={"redis"}, environ=environment))
    for name, host, port in [
        ("postgres", database["HOST"], int(database["PORT"])),
        ("redis", redis_url.hostname, redis_url.port),
    ]:
        published = {published_on(mapping) for mapping in services[name]["ports"]}
        assert (host, port) in published, f"the worker looks for {name} at {host}:{port}"


def test_the_registry_wants_the_login_web_and_worker_are_given(compose: dict[str, Any]) -> None:
    services = compose["services"]
    registry = services["registry"]["environment"]
    assert registry["REGISTRY_AUTH"] == "htpasswd"
    login = services["registry-login"]
    assert (
        login["environment"]["DOCKYARD_REGISTRY_PASSWORD"] == SECRETS["DOCKYARD_REGISTRY_PASSWORD"]
    )
    assert "htpasswd -Bbn dockyard" in " ".join(login["command"])
    assert services["registry"]["depends_on"]["registry-login"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        assert environment["DOCKYARD_REGISTRY_USERNAME"] == "dockyard"
        assert environment["DOCKYARD_REGISTRY_PASSWORD"] == SECRETS["DOCKYARD_REGISTRY_PASSWORD"]
