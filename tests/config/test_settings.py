"""A bad environment stops start-up with a message that names the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.environment import env_bool, env_database, env_host_port, env_int, env_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DATABASE_URL",
            "mysql://db/dockyard",
            "DATABASE_URL='mysql://db/dockyard': unsupported scheme",
        ),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379': expected a URL"),
        (
            "DOCKER_HOST",
            "/var/run/docker.sock",
            "DOCKER_HOST='/var/run/docker.sock': expected a URL",
        ),
        (
            "DOCKYARD_REGISTRY",
            "http://127.0.0.1:5000",
            "DOCKYARD_REGISTRY='http://127.0.0.1:5000' is not a registry address",
        ),
        ("DOCKYARD_DEBUG", "maybe", "DOCKYARD_DEBUG='maybe' is not a boolean"),
        (
            "DOCKYARD_DATA_DIR",
            "relative/data",
            "DOCKYARD_DATA_DIR='relative/data' must be an absolute path",
        ),
    ],
)
def test_manage_py_refuses_to_start_and_names_the_variable(
    variable: str, value: str, message: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_database_url_defaults_may_be_sqlite_or_postgres() -> None:
    postgres = env_database("DATABASE_URL", "", environ={"DATABASE_URL": "postgres://u:p@h:5/d"})
    assert (postgres["ENGINE"], postgres["NAME"], postgres["PORT"]) == (
        "django.db.backends.postgresql",
        "d",
        5,
    )
    sqlite = env_database("DATABASE_URL", "sqlite:////tmp/x.sqlite3", environ={})
    assert sqlite["NAME"] == "/tmp/x.sqlite3"
    assert sqlite["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_a_database_url_without_a_name_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="names no database"):
        env_database("DATABASE_URL", "", environ={"DATABASE_URL": "postgres://u@h:5432"})


def test_registry_addresses_with_and_without_port() -> None:
    for value in ("127.0.0.1:5000", "registry.example.com", "[::1]:5000"):
        assert env_host_port("R", "x", environ={"R": value}) == value
    with pytest.raises(ImproperlyConfigured, match="R='h:99999'"):
        env_host_port("R", "x", environ={"R": "h:99999"})


def test_numbers_and_urls_are_checked() -> None:
    with pytest.raises(ImproperlyConfigured, match="N='ten' is not a whole number"):
        env_int("N", 1, environ={"N": "ten"})
    with pytest.raises(ImproperlyConfigured, match="U='https://' names no host"):
        env_url("U", "", schemes={"https"}, environ={"U": "https://"})
    assert env_bool("B", False, environ={"B": "Yes"}) is True
