"""A bad environment stops start-up with a message that names the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.environment import (
    env_bool,
    env_database,
    env_file_defaults,
    env_host_port,
    env_int,
    env_origins,
    env_url,
    url_origin,
    url_with_password,
)

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
        (
            # The UI is on http://127.0.0.1:8000 by default: apps must live elsewhere.
            "DOCKYARD_APP_ADDRESS",
            "127.0.0.1",
            "DOCKYARD_APP_ADDRESS=127.0.0.1 is the host of DOCKYARD_PUBLIC_URL",
        ),
        ("DOCKYARD_APP_ADDRESS", "apps.local", "DOCKYARD_APP_ADDRESS='apps.local' is not an IP"),
        (
            "DOCKYARD_TEST_NETWORK",
            "bridge",
            "DOCKYARD_TEST_NETWORK='bridge': use one of none, host",
        ),
        ("DOCKYARD_TEST_MAX_MEMORY", "lots", "DOCKYARD_TEST_MAX_MEMORY='lots' is not a size"),
        (
            "DOCKYARD_PUBLIC_URL_ALIASES",
            "https://ui.example.com/path",
            "DOCKYARD_PUBLIC_URL_ALIASES: 'https://ui.example.com/path' is not an origin",
        ),
        (
            "DOCKYARD_REGISTRY_USERNAME",
            "dockyard-only",
            "set both DOCKYARD_REGISTRY_USERNAME and DOCKYARD_REGISTRY_PASSWORD, or neither",
        ),
    ],
)
def test_manage_py_refuses_to_start_and_names_the_variable(
    variable: str, value: str, message: str
) -> None:
    environment = {**os.environ, variable: value}
    # Given as a file elsewhere in the suite; one of the two names at a time.
    environment.pop(f"{variable}_FILE", None)
    if variable == "DOCKYARD_REGISTRY_USERNAME":
        environment.pop("DOCKYARD_REGISTRY_PASSWORD_FILE", None)
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_with_postgresql_start_up_refuses_a_host_of_its_own_secret_key(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "DATABASE_URL": "postgres://dockyard:dockyard@127.0.0.1:5432/dockyard",
        "DOCKYARD_DATA_DIR": str(tmp_path),
    }
    for name in ("DOCKYARD_SECRET_KEY", "DOCKYARD_SECRET_KEY_FILE", "DOCKYARD_ENCRYPTION_KEYS"):
        environment.pop(name, None)

    refused = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    environment["DOCKYARD_SECRET_KEY"] = "k" * 40
    accepted = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert refused.returncode == 2
    assert (
        "DOCKYARD_SECRET_KEY (or DOCKYARD_SECRET_KEY_FILE) must be set when the database is "
        "PostgreSQL" in refused.stderr
    )
    assert "Traceback" not in refused.stderr
    assert accepted.returncode == 0, accepted.stderr


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


def test_origins_are_normalised_as_browsers_send_them() -> None:
    environ = {"ALIASES": "https://UI.example.com:443, http://127.0.0.1:8080/ https://[::1]:8443"}
    assert env_origins("ALIASES", environ) == [
        "https://ui.example.com",
        "http://127.0.0.1:8080",
        "https://[::1]:8443",
    ]
    assert url_origin("http://127.0.0.1:80/runs/") == "http://127.0.0.1"


def test_a_redis_password_goes_into_the_url_unless_it_carries_one() -> None:
    assert url_with_password("redis://127.0.0.1:6380/0", "p@ss/w") == (
        "redis://:p%40ss%2Fw@127.0.0.1:6380/0"
    )
    assert url_with_password("redis://:own@h:1/0", "other") == "redis://:own@h:1/0"
    assert url_with_password("redis://h:1/0", "") == "redis://h:1/0"


def test_an_env_file_fills_in_what_the_environment_does_not_set(tmp_path: Path) -> None:
    env_file = tmp_path / "dockyard.env"
    env_file.write_text(
        "# written by up.sh\nREDIS_URL=redis://127.0.0.1:6380/0\n\n"
        "DOCKYARD_REDIS_PASSWORD_FILE=/secrets/redis\nDOCKYARD_REGISTRY_PASSWORD_FILE=/x\n"
    )
    environ = {"REDIS_URL": "redis://elsewhere:1/0", "DOCKYARD_REGISTRY_PASSWORD": "typed"}
    taken = env_file_defaults(env_file, environ)
    assert taken == ["DOCKYARD_REDIS_PASSWORD_FILE"]
    assert environ["REDIS_URL"] == "redis://elsewhere:1/0"
    assert "DOCKYARD_REGISTRY_PASSWORD_FILE" not in environ
    env_file.write_text("not a setting\n")
    with pytest.raises(ImproperlyConfigured, match=r"dockyard\.env:1: expected NAME=value"):
        env_file_defaults(env_file, {})
