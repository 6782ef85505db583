"""Read settings from environment variables, refusing bad values with a message naming the variable.

Every reader raises ImproperlyConfigured so that start-up stops before a worker or the web
process runs with a half-understood configuration.
"""

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:(?P<port>\d{1,5}))?$")
_HOST_PATTERN = re.compile(r"^[a-z0-9.*?\[\]!_-]+$")


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    """The variable's value, or the content of the file NAME_FILE names (Docker and Kubernetes
    secrets): a secret mounted as a file stays out of `docker inspect` and /proc/<pid>/environ.
    """
    source = os.environ if environ is None else environ
    value = source.get(name)
    file_variable = f"{name}_FILE"
    path = source.get(file_variable)
    if path is None:
        return value
    if value is not None:
        raise ImproperlyConfigured(f"both {name} and {file_variable} are set: set only one of them")
    if not path:
        raise ImproperlyConfigured(f"{file_variable} is empty: give the path of a file")
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ImproperlyConfigured(
            f"{file_variable}={path!r}: cannot read the file ({error.strerror or error})"
        ) from None
    except UnicodeDecodeError:
        raise ImproperlyConfigured(
            f"{file_variable}={path!r}: the file is not UTF-8 text"
        ) from None
    # `echo secret > file` and most editors end the file with a newline that is no part of it.
    return content.removesuffix("\n")


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true or false")


def env_int(
    name: str, default: int, *, minimum: int = 0, environ: Mapping[str, str] | None = None
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}")
    return number


def env_float(
    name: str, default: float, *, minimum: float = 0.0, environ: Mapping[str, str] | None = None
) -> float:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if not number >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}")
    return number


def env_list(name: str, default: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_database(
    name: str, default: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """DATABASE_URL: postgres://user:password@host:port/name or sqlite:////absolute/path."""
    value = env_str(name, default, environ)
    scheme = urlsplit(value).scheme
    if scheme not in {"postgres", "postgresql", "sqlite"}:
        raise ImproperlyConfigured(
            f"{name}={value!r}: unsupported scheme {scheme!r}; use postgres:// or sqlite:///"
        )
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(value))
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}={value!r} is not a database URL: {error}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}={value!r} names no database")
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Parameters travel apart from the SQL, in binary: no escaping of a webhook's raw body
        # into a literal in Python on every insert.
        config["OPTIONS"] = {"server_side_binding": True}
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Web and workers write at once; WAL and immediate transactions keep SQLite from
        # answering "database is locked" under that load.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


def env_url(
    name: str, default: str, *, schemes: set[str], environ: Mapping[str, str] | None = None
) -> str:
    value = env_str(name, default, environ)
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in sorted(schemes))
        raise ImproperlyConfigured(f"{name}={value!r}: expected a URL starting with {allowed}")
    if parts.scheme not in {"unix", "npipe"} and not parts.hostname:
        raise ImproperlyConfigured(f"{name}={value!r} names no host")
    return value.rstrip("/")


def env_host_port(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """A registry address such as 127.0.0.1:5000 or registry.example.com (no scheme, no path)."""
    value = env_str(name, default, environ)
    match = _HOST_PORT.match(value)
    if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a registry address: use host or host:port, "
            "without a scheme or a path"
        )
    return value


def env_path(name: str, default: Path, environ: Mapping[str, str] | None = None) -> Path:
    value = _raw(name, environ)
    path = default if value is None else Path(value)
    if not path.is_absolute():
        raise ImproperlyConfigured(f"{name}={str(path)!r} must be an absolute path")
    return path


def secret_key(
    name: str,
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    required_because: str | None = None,
) -> str:
    """The variable if set, else a key generated once and kept in the data folder; with
    `required_because`, a missing variable is an error that says why it must be set."""
    value = _raw(name, environ)
    if value is not None:
        if len(value) < 32:
            raise ImproperlyConfigured(f"{name} is too short: use at least 32 characters")
        return value
    key_file = data_dir / "secret_key"
    if required_because is not None:
        kept = f" (this host's generated key is in {key_file})" if key_file.exists() else ""
        raise ImproperlyConfigured(
            f"{name} (or {name}_FILE) must be set {required_because}{kept}; make one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`"
        )
    if not key_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and linked into place, so that processes starting together all
        # read the one key that won, never a half-written file.
        draft = data_dir / f".secret_key.{os.getpid()}"
        draft.write_text(secrets.token_urlsafe(50))
        draft.chmod(0o600)
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


def env_fernet_keys(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Fernet keys separated by commas, spaces or newlines (one a line in a NAME_FILE file).

    Messages name a bad key by its position, never by its value: it is a secret.
    """
    value = _raw(name, environ)
    if value is None:
        return []
    keys = [key for key in re.split(r"[\s,]+", value) if key]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: key {position} of {len(keys)} is not a Fernet key (32 bytes in "
                "url-safe base64, 44 characters); make one with: python -c 'from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    if len(set(keys)) != len(keys):
        raise ImproperlyConfigured(f"{name} lists the same key twice")
    return keys


def env_host_patterns(
    name: str, default: list[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Glob patterns over host names (`github.com *.example.org`), spaces or commas between."""
    value = _raw(name, environ)
    if value is None:
        return default
    patterns = [pattern.lower() for pattern in re.split(r"[\s,]+", value) if pattern]
    if not patterns:
        raise ImproperlyConfigured(f"{name} is empty: give host patterns, or * for every host")
    for pattern in patterns:
        if not _HOST_PATTERN.match(pattern):
            raise ImproperlyConfigured(
                f"{name}: {pattern!r} is not a host name pattern (letters, digits, '.', '-' "
                "and the globs *, ? and [...]; no scheme, port or path)"
            )
    return patterns


def env_port_range(name: str, default: str, environ: Mapping[str, str] | None = None) -> range:
    """A port range such as 9100-9199 (both ends included)."""
    value = env_str(name, default, environ)
    first, separator, last = value.partition("-")
    if not (separator and first.isdigit() and last.isdigit()) or not (
        0 < int(first) <= int(last) < 65536
    ):
        raise ImproperlyConfigured(f"{name}={value!r} is not a port range like 9100-9199")
    return range(int(first), int(last) + 1)


def env_choice(
    name: str, default: str, choices: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> str:
    value = env_str(name, default, environ).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value


def env_choices(
    name: str,
    default: tuple[str, ...],
    choices: tuple[str, ...],
    environ: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Some of `choices`, commas between (`build,deploy`), in the order of `choices`."""
    value = _raw(name, environ)
    if value is None:
        return default
    given = [item.strip().lower() for item in value.split(",") if item.strip()]
    unknown = [item for item in given if item not in choices]
    if unknown or not given:
        raise ImproperlyConfigured(
            f"{name}={value!r}: use one or more of {', '.join(choices)}, commas between"
        )
    return tuple(choice for choice in choices if choice in given)


_SIZE = re.compile(r"^(?P<amount>\d+)(?P<unit>[kmg]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def env_size(name: str, default: str, environ: Mapping[str, str] | None = None) -> int:
    """A size in bytes written as dockyard.yml writes memory: 512m, 4g, 1073741824."""
    value = env_str(name, default, environ).strip()
    match = _SIZE.match(value)
    if not match or int(match["amount"]) == 0:
        raise ImproperlyConfigured(f"{name}={value!r} is not a size: write e.g. 512m or 4g")
    return int(match["amount"]) * _SIZE_UNITS[match["unit"].lower()]


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL, the default port left out, as browsers send Origin."""
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def env_origins(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Exact browser origins (scheme://host[:port], no path), commas or spaces between."""
    value = _raw(name, environ)
    if value is None:
        return []
    origins = []
    for item in re.split(r"[\s,]+", value.strip()):
        if not item:
            continue
        parts = urlsplit(item)
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or parts.path
            not in {
                "",
                "/",
            }
        ):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin; write scheme://host[:port], e.g. "
                "https://dockyard.example.com"
            )
        origins.append(url_origin(item))
    return origins


def env_ip_address(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = env_str(name, default, environ).strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an IP address") from None


def url_with_password(url: str, password: str) -> str:
    """`url` (redis://host:6379/0) carrying `password`, unless it already carries one."""
    if not password:
        return url
    parts = urlsplit(url)
    if parts.password is not None or parts.scheme == "unix":
        return url
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{parts.netloc}").geturl()


def env_file_defaults(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Take NAME=value lines of `path` as defaults for variables the environment does not set.

    `make up` writes one into the data folder (dockyard.env: which Redis, which secret files),
    so that `manage.py deploy ...` typed later in a shell talks to the same services. Returns
    the names it set. Blank lines and # comments are skipped; a malformed line is an error.
    """
    target = os.environ if environ is None else environ
    if not path.is_file():
        return []
    taken = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, value = line.partition("=")
        if not separator or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ImproperlyConfigured(f"{path}:{number}: expected NAME=value")
        # Set in the environment, directly or as NAME_FILE (or NAME for a NAME_FILE line): it wins.
        variable = name.removesuffix("_FILE")
        if variable in target or f"{variable}_FILE" in target:
            continue
        target[name] = value
        taken.append(name)
    return taken
