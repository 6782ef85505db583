"""How Dockyard reaches a Docker engine: a local socket, TCP with TLS, or SSH.

Part of the Docker engine adapter (docker_engine uses it; nothing else should). The URL says
the way, as DOCKER_HOST does for the docker CLI, and so does the set-up:

- `unix:///var/run/docker.sock`: the worker's own engine.
- `tcp://host:2376`: TLS both ways with DOCKER_TLS_VERIFY=1, the CA and client certificate
  in DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem). Plain TCP is accepted for a loopback
  address only: whoever reaches an engine's port runs containers as root on its host.
- `ssh://user@host[:port]`: paramiko, with the worker user's ssh set-up (~/.ssh/config, its
  keys or agent); the host key must already be in ~/.ssh/known_hosts, never taken on first
  sight. On the far side `docker system dial-stdio` reaches that host's engine (the docker CLI
  must be installed there, and the user allowed on its socket).
"""

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import docker
import paramiko
from django.conf import settings
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.errors import DockerException
from docker.tls import TLSConfig


class EngineConnectionError(Exception):
    """The engine cannot be reached the way its URL says; the message says what to fix."""


def docker_client(base_url: str, *, timeout: int) -> docker.DockerClient:
    """A client of the engine at `base_url`, connected (ssh) or ready to connect."""
    parts = urlsplit(base_url)
    tls: TLSConfig | None = None
    if parts.scheme in {"tcp", "https"}:
        tls = _tls_config(base_url)
    try:
        if tls is not None:
            return _tls_client(base_url, tls, timeout)
        # use_ssh_client=False: paramiko, not a `ssh` process per connection.
        return docker.DockerClient(
            base_url=base_url, timeout=timeout, tls=False, use_ssh_client=False
        )
    except paramiko.SSHException as error:
        raise EngineConnectionError(ssh_failure_explained(base_url, error)) from None
    except (DockerException, OSError) as error:
        raise EngineConnectionError(
            f"cannot reach the Docker engine at {base_url}: {error}"
        ) from None


def ssh_failure_explained(base_url: str, error: Exception) -> str:
    """What an ssh failure means for the operator, naming the host and what to do."""
    host = urlsplit(base_url).hostname or base_url
    if isinstance(error, paramiko.AuthenticationException):
        return (
            f"ssh to {base_url} refused the worker's key ({error}): add the worker user's public "
            f"key to that user's ~/.ssh/authorized_keys on {host}"
        )
    if isinstance(error, paramiko.BadHostKeyException):
        return (
            f"the ssh host key of {host} is not the one in the worker's ~/.ssh/known_hosts: "
            "refusing to connect (if the host was rebuilt, check its key and replace the line)"
        )
    if "not found in known_hosts" in str(error):
        return (
            f"the ssh host key of {host} is not in the worker's ~/.ssh/known_hosts; check it "
            f"and add it (ssh-keyscan -p PORT {host} >> ~/.ssh/known_hosts)"
        )
    return f"cannot reach the Docker engine at {base_url} over ssh: {error}"


def _tls_client(base_url: str, tls: TLSConfig, timeout: int) -> docker.DockerClient:
    # requests prefers REQUESTS_CA_BUNDLE (set on many machines) to the session's own CA, so
    # the engines' CA would be ignored: the session must not read the environment, and so the
    # API version is asked for only once that is set (DockerClient asks as it is made).
    client = docker.DockerClient(
        base_url=base_url, timeout=timeout, tls=tls, version=MINIMUM_DOCKER_API_VERSION
    )
    client.api.trust_env = False
    client.api._version = client.api._retrieve_server_version()
    return client


def _tls_config(base_url: str) -> TLSConfig | None:
    if not settings.DOCKER_TLS_VERIFY:
        host = urlsplit(base_url).hostname or ""
        if not _is_loopback(host):
            raise EngineConnectionError(
                f"{base_url} would be plain TCP: anyone who reaches that port runs containers as "
                "root there; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (ca.pem, cert.pem, "
                "key.pem), or use ssh://"
            )
        return None
    folder = Path(settings.DOCKER_CERT_PATH)
    files = {name: folder / name for name in ("ca.pem", "cert.pem", "key.pem")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise EngineConnectionError(
            f"DOCKER_TLS_VERIFY is set but DOCKER_CERT_PATH lacks {', '.join(missing)}"
        )
    return TLSConfig(
        client_cert=(str(files["cert.pem"]), str(files["key.pem"])),
        ca_cert=str(files["ca.pem"]),
        verify=True,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
