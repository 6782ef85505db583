"""Every setting can come from a file: NAME_FILE names it (Docker and Kubernetes secrets)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.environment import (
    env_bool,
    env_database,
    env_fernet_keys,
    env_host_patterns,
    env_int,
    env_str,
    secret_key,
)

ROOT = Path(__file__).resolve().parents[2]
FERNET_KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


def test_a_value_is_read_from_the_file_that_name_file_names(tmp_path: Path) -> None:
    secret = tmp_path / "slack"
    secret.write_text("signing-secret-123\n")

    value = env_str("SLACK", "", environ={"SLACK_FILE": str(secret)})

    assert value == "signing-secret-123"


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "value"
    secret.write_text("  spaced value \n\n")

    assert env_str("VALUE", "", environ={"VALUE_FILE": str(secret)}) == "  spaced value \n"


def test_every_kind_of_setting_reads_its_file(tmp_path: Path) -> None:
    files = {
        "DEBUG": "true\n",
        "WORKERS": "8\n",
        "DATABASE_URL": "postgres://dockyard:pa55@db:5432/dockyard\n",
        "KEYS": f"{FERNET_KEY}\n",
        "HOSTS": "github.com\n*.example.org\n",
    }
    environ = {}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
        environ[f"{name}_FILE"] = str(tmp_path / name)

    assert env_bool("DEBUG", False, environ=environ) is True
    assert env_int("WORKERS", 1, environ=environ) == 8
    assert env_database("DATABASE_URL", "", environ=environ)["PASSWORD"] == "pa55"
    assert env_fernet_keys("KEYS", environ=environ) == [FERNET_KEY]
    assert env_host_patterns("HOSTS", ["*"], environ=environ) == ["github.com", "*.example.org"]


def test_the_secret_key_is_read_from_its_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 40 + "\n")

    key = secret_key("SECRET", tmp_path / "data", environ={"SECRET_FILE": str(key_file)})

    assert key == "k" * 40
    assert not (tmp_path / "data").exists(), "no key is generated when one is given"


def test_setting_both_the_variable_and_its_file_is_refused_naming_both(tmp_path: Path) -> None:
    secret = tmp_path / "value"
    secret.write_text("from the file")

    with pytest.raises(ImproperlyConfigured) as refusal:
        env_str("TOKEN", "", environ={"TOKEN": "inline", "TOKEN_FILE": str(secret)})

    assert str(refusal.value) == "both TOKEN and TOKEN_FILE are set: set only one of them"


@pytest.mark.parametrize(
    ("name", "why"),
    [("missing", "No such file or directory"), ("a-folder", "Is a directory")],
)
def test_a_file_that_cannot_be_read_is_refused_naming_the_variable_and_the_path(
    tmp_path: Path, name: str, why: str
) -> None:
    (tmp_path / "a-folder").mkdir()
    path = str(tmp_path / name)

    with pytest.raises(ImproperlyConfigured) as refusal:
        env_str("TOKEN", "", environ={"TOKEN_FILE": path})

    assert str(refusal.value) == f"TOKEN_FILE={path!r}: cannot read the file ({why})"


def test_an_empty_file_variable_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="TOKEN_FILE is empty: give the path of a file"):
        env_str("TOKEN", "", environ={"TOKEN_FILE": ""})


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "binary"
    secret.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ImproperlyConfigured) as refusal:
        env_str("TOKEN", "", environ={"TOKEN_FILE": str(secret)})

    assert str(refusal.value) == f"TOKEN_FILE={str(secret)!r}: the file is not UTF-8 text"


def test_a_bad_value_in_a_file_is_refused_like_a_bad_variable(tmp_path: Path) -> None:
    (tmp_path / "debug").write_text("maybe\n")

    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", False, environ={"DEBUG_FILE": str(tmp_path / "debug")})


def test_the_settings_module_takes_its_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "slack").write_text("slack-signing-secret\n")
    (tmp_path / "keys").write_text(f"{FERNET_KEY}\n")
    env = {
        **os.environ,
        "DOCKYARD_SLACK_SIGNING_SECRET_FILE": str(tmp_path / "slack"),
        "DOCKYARD_ENCRYPTION_KEYS_FILE": str(tmp_path / "keys"),
    }
    env.pop("DOCKYARD_SLACK_SIGNING_SECRET", None)
    env.pop("DOCKYARD_ENCRYPTION_KEYS", None)

    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; "
            "print(settings.DOCKYARD_SLACK_SIGNING_SECRET, settings.DOCKYARD_ENCRYPTION_KEYS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"slack-signing-secret ['{FERNET_KEY}']"


def test_manage_py_refuses_to_start_when_a_variable_and_its_file_are_both_set(
    tmp_path: Path,
) -> None:
    (tmp_path / "key").write_text("k" * 40)
    env = {
        **os.environ,
        "DOCKYARD_SECRET_KEY": "s" * 40,
        "DOCKYARD_SECRET_KEY_FILE": str(tmp_path / "key"),
    }

    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 2
    assert "both DOCKYARD_SECRET_KEY and DOCKYARD_SECRET_KEY_FILE are set" in completed.stderr
    assert "Traceback" not in completed.stderr
