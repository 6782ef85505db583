"""The Docker engine adapter: build images, run throwaway containers, pull and push.

The only module that imports the Docker SDK. Its errors become DockerEngineError (or
ImageBuildError for a build that failed because of the Dockerfile). Every container it starts
carries Dockyard's labels, so that a sweep by label finds any that outlived its run.

How it reaches an engine: the URL says the way, as DOCKER_HOST does for the docker CLI, and so
does the set-up:

- `unix:///var/run/docker.sock`: the worker's own engine.
- `tcp://host:2376`: TLS both ways with DOCKER_TLS_VERIFY=1, the CA and client certificate
  in DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem). Plain TCP is accepted for a loopback
  address only: whoever reaches an engine's port runs containers as root on its host.
- `ssh://user@host[:port]`: paramiko, with the worker user's ssh set-up (~/.ssh/config, its
  keys or agent); the host key must already be in ~/.ssh/known_hosts, never taken on first
  sight. On the far side `docker system dial-stdio` reaches that host's engine (the docker CLI
  must be installed there, and the user allowed on its socket).
"""

import codecs
import hashlib
import io
import ipaddress
import posixpath
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import docker
import paramiko
import requests
from django.conf import settings
from docker.api.build import process_dockerfile
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.tls import TLSConfig
from docker.utils.build import exclude_paths
from docker.utils.build import tar as context_tar

MANAGED_LABEL = "dockyard.managed"
# Dockyard's own long-running containers (each host's HAProxy, whose output is its request log)
# keep a bounded log: the collector reads it every few seconds; older lines are of no use. The
# engine writes it as it takes it in (mode blocking): HAProxy, whose output is non-blocking,
# counts a line it could not write (DroppedLogs, which the collector reports), where a buffer in
# the engine (mode non-blocking) would drop lines that nothing counts.
DAEMON_LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}}
# The static busybox a namespace holder runs (Debian's busybox-static).
HOLDER_BUSYBOX = "/bin/busybox"
# What a test may leave for Dockyard to read back (its reports), per path.
ARCHIVE_LIMIT = 64 * 1024 * 1024
# Whatever a repository's .dockerignore says (even "!.git"), history never enters a build
# context: it grows with every commit and slows every build. Appended last, so they win.
ALWAYS_EXCLUDED = (".git", ".git/**", "**/.git", "**/.git/**")

OutputSink = Callable[[str], None]
# A read of every line of a span of a container's log asks the engine for this many of its last
# lines first, more while they all fall in the span.
LOG_LINES_FIRST_READ = 2_000
# A container's two output streams, each logged by the engine line by line.
LogStream = Literal["stdout", "stderr"]


class DockerEngineError(Exception):
    """The engine could not be reached or refused a request."""


class RegistryUnreachable(DockerEngineError):
    """The engine could not reach the registry (down, restarting, network): worth retrying."""


# What the engine says when the registry does not answer, as opposed to refusing the push.
_UNREACHABLE_MARKERS = (
    "connection refused",
    "connection reset",
    "i/o timeout",
    "no such host",
    "dial tcp",
    "unexpected eof",
    ": eof",
    "503 service unavailable",
    "502 bad gateway",
)


def registry_unreachable(message: str) -> bool:
    """Does this push error say the registry could not be reached (rather than refused)?"""
    lowered = message.lower()
    return any(marker in lowered for marker in _UNREACHABLE_MARKERS)


class ImageBuildError(DockerEngineError):
    """The image did not build: a failing RUN step, a missing file, a bad Dockerfile."""


class BuildStopped(DockerEngineError):
    """The build was stopped because its run was cancelled."""


class ImageInUse(DockerEngineError):
    """The engine refused to remove an image because a container uses it."""


@dataclass(frozen=True)
class ContainerLimits:
    memory_bytes: int = 512 * 1024 * 1024
    pids: int = 256
    nano_cpus: int = 1_000_000_000
    network: bool = False
    user: str | None = None
    # The id of a running container whose network namespace this one joins (a test's own
    # namespace, shared with its services); overrides `network`.
    network_of: str | None = None


@dataclass(frozen=True)
class ContainerOutcome:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    stopped: bool = False
    # (path asked for, tar archive of it) for each path the caller wanted back that existed.
    archives: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ImageInfo:
    id: str
    size_bytes: int
    repo_digests: tuple[str, ...]

    def digest_in(self, repository: str) -> str | None:
        """The manifest digest this image has in `repository`, if it was pushed or pulled there."""
        for reference in self.repo_digests:
            name, _, digest = reference.partition("@")
            if name == repository:
                return digest
        return None


@dataclass(frozen=True)
class LocalImage:
    """An image on the engine, by the names it carries here."""

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    # The later of its build and its last tagging on this engine. A pulled image keeps the
    # time it was built elsewhere: the engine records no time of arrival.
    touched_at: datetime
    size_bytes: int


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    name: str
    image_id: str
    state: str
    labels: dict[str, str]


def registry_auth_config(repository: str) -> dict[str, str] | None:
    """The engine's login for `repository`: Dockyard's registry account, for its registry only
    (a pull from another registry never carries these credentials)."""
    registry = repository.partition("/")[0]
    if not settings.DOCKYARD_REGISTRY_USERNAME or registry != settings.DOCKYARD_REGISTRY:
        return None
    return {
        "username": settings.DOCKYARD_REGISTRY_USERNAME,
        "password": settings.DOCKYARD_REGISTRY_PASSWORD,
        "serveraddress": registry,
    }


def build_context_files(context_dir: Path, dockerfile: Path) -> list[str]:
    """The files (relative paths) a build of `dockerfile` in `context_dir` sends to the engine."""
    name, _ = process_dockerfile(str(dockerfile), str(context_dir))
    paths = exclude_paths(str(context_dir), _ignore_patterns(context_dir), dockerfile=name)
    return sorted(
        path
        for path in paths
        if (context_dir / path).is_symlink() or not (context_dir / path).is_dir()
    )


class ContainerEngine(Protocol):
    """What the run path and the deployments need of an engine. DockerEngine is the real one;
    tests of state-machine logic pass an in-memory stand-in (tests/fakes.py)."""

    def build_image(
        self,
        *,
        context_dir: Path,
        dockerfile: Path,
        tag: str,
        on_output: OutputSink,
        buildargs: dict[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> str: ...

    def image_info(self, reference: str) -> "ImageInfo | None": ...

    def image_exists(self, reference: str) -> bool: ...

    def pull_image(self, *, repository: str, tag: str, on_output: OutputSink) -> None: ...

    def push_image(
        self, *, image_id: str, repository: str, tag: str, on_output: OutputSink
    ) -> str: ...

    def ensure_image(self, *, reference: str, on_output: OutputSink) -> str: ...

    def run_throwaway(
        self,
        *,
        image: str,
        command: list[str],
        labels: dict[str, str],
        timeout: int,
        limits: ContainerLimits,
        on_output: OutputSink,
        environment: dict[str, str] | None = None,
        stop: threading.Event | None = None,
        volumes: dict[str, str] | None = None,
        archive_paths: tuple[str, ...] = (),
    ) -> ContainerOutcome: ...

    def namespace_holder_start(self, *, labels: dict[str, str], hosts: dict[str, str]) -> str: ...

    def sidecar_start(
        self,
        *,
        image: str,
        command: list[str] | None,
        environment: dict[str, str],
        labels: dict[str, str],
        limits: ContainerLimits,
    ) -> str: ...

    def exec_run(self, container_id: str, command: list[str]) -> tuple[int, str]: ...

    def volume_ensure(self, name: str, *, labels: dict[str, str]) -> None: ...

    def start_service(
        self, *, image: str, name: str, environment: dict[str, str], labels: dict[str, str]
    ) -> str: ...

    def start_container(self, container_id: str) -> None: ...

    def stop_container(self, container_id: str, *, timeout: int = 10) -> None: ...

    def remove_container(self, container_id: str) -> None: ...

    def container_state(self, container_id: str) -> str | None: ...

    def container_logs(self, container_id: str, *, tail: int = 40) -> str: ...

    def container_log_lines(
        self,
        container_id: str,
        *,
        stream: LogStream,
        since: datetime | None,
        until: datetime | None,
        tail: int | None,
    ) -> list[tuple[datetime, str]]: ...

    def remove_containers(self, *, labels: dict[str, str]) -> int: ...


@dataclass(frozen=True)
class EngineIdentity:
    """Which engine answered: its host's name, its version, where it keeps its data."""

    name: str
    version: str
    data_root: str


# How the code that needs an engine gets one: called with the engine's URL, it gives a context
# manager that closes the connection. DockerEngine itself is the real factory.
EngineFactory = Callable[[str], AbstractContextManager[ContainerEngine]]


class KeptEngines:
    """An EngineFactory whose connections stay open from one use to the next, one per URL,
    until close(): what reads an engine every few seconds would otherwise pay a handshake each
    time (over ssh, a few hundred milliseconds). A connection that failed is closed and
    forgotten, and the next use connects again. For one thread."""

    def __init__(self, engines: EngineFactory) -> None:
        self._engines = engines
        self._open: dict[str, tuple[ExitStack, ContainerEngine]] = {}

    @contextmanager
    def __call__(self, url: str) -> Iterator[ContainerEngine]:
        if url not in self._open:
            stack = ExitStack()
            self._open[url] = (stack, stack.enter_context(self._engines(url)))
        try:
            yield self._open[url][1]
        except DockerEngineError:
            self.forget(url)
            raise

    def forget(self, url: str) -> None:
        """Close the connection to `url` (the next use connects again)."""
        if url in self._open:
            stack, _ = self._open.pop(url)
            stack.close()

    def close(self) -> None:
        for url in list(self._open):
            self.forget(url)


class DockerEngine:
    """One connection to one engine; use it as a context manager so the connection is closed."""

    def __init__(self, base_url: str, *, timeout: int = 300) -> None:
        self._base_url = base_url
        try:
            self._client = docker_client(base_url, timeout=timeout)
        except EngineConnectionError as error:
            raise DockerEngineError(str(error)) from None

    def __enter__(self) -> "DockerEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def identity(self) -> EngineIdentity:
        with self._translated_errors("engine info"):
            info = self._client.info()
        return EngineIdentity(
            name=str(info.get("Name", "")),
            version=str(info.get("ServerVersion", "")),
            data_root=str(info.get("DockerRootDir", "")),
        )

    def build_image(
        self,
        *,
        context_dir: Path,
        dockerfile: Path,
        tag: str,
        on_output: OutputSink,
        buildargs: dict[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> str:
        """Build and tag an image, streaming the builder's output; returns the image id.

        `dockerfile` may lie outside `context_dir`; the context honours .dockerignore but never
        carries .git. Images get no labels: the legacy builder turns each label into a step of
        its own, a container start apiece, on every build. Dockyard finds its images by name.
        """
        image_id = None
        name, contents = process_dockerfile(str(dockerfile), str(context_dir))
        with (
            self._translated_errors("build"),
            context_tar(
                str(context_dir),
                exclude=_ignore_patterns(context_dir),
                dockerfile=(name, contents),
            ) as context,
        ):
            stream = self._client.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=name,
                tag=tag,
                buildargs=buildargs or {},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if stop is not None and stop.is_set():
                    stream.close()
                    raise BuildStopped("the build was stopped")
                if "error" in chunk:
                    raise ImageBuildError(str(chunk["error"]).strip())
                if "stream" in chunk:
                    on_output(chunk["stream"])
                elif "status" in chunk:
                    on_output(f"{chunk['status']}\n")
                aux = chunk.get("aux") or {}
                if "ID" in aux:
                    image_id = aux["ID"]
            if image_id is None:
                image_id = self._client.images.get(tag).id
        return str(image_id)

    def image_info(self, reference: str) -> ImageInfo | None:
        """The local image `reference` names, or None."""
        with self._translated_errors("image lookup"):
            try:
                image = self._client.images.get(reference)
            except ImageNotFound:
                return None
            return ImageInfo(
                id=str(image.id),
                size_bytes=int(image.attrs.get("Size") or 0),
                repo_digests=tuple(image.attrs.get("RepoDigests") or ()),
            )

    def image_exists(self, reference: str) -> bool:
        return self.image_info(reference) is not None

    def pull_image(self, *, repository: str, tag: str, on_output: OutputSink) -> None:
        """Pull repository:tag, or repository@digest when `tag` is a digest."""
        with self._translated_errors("pull"):
            for chunk in self._client.api.pull(
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=registry_auth_config(repository),
            ):
                if "error" in chunk:
                    raise DockerEngineError(f"pull of {repository}:{tag} failed: {chunk['error']}")
                status = chunk.get("status", "")
                if status and status not in {"Downloading", "Extracting", "Waiting"}:
                    layer = chunk.get("id")
                    on_output(f"{layer}: {status}\n" if layer else f"{status}\n")

    def push_image(self, *, image_id: str, repository: str, tag: str, on_output: OutputSink) -> str:
        """Tag the image as repository:tag and push it; returns the manifest digest."""
        digest = None
        with self._translated_errors("push"):
            self._client.images.get(image_id).tag(repository, tag)
            stream = self._client.api.push(
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=registry_auth_config(repository),
            )
            for chunk in stream:
                if "error" in chunk:
                    failure = f"push of {repository}:{tag} failed: {chunk['error']}"
                    if registry_unreachable(str(chunk["error"])):
                        raise RegistryUnreachable(failure)
                    raise DockerEngineError(failure)
                aux = chunk.get("aux") or {}
                if "Digest" in aux:
                    digest = aux["Digest"]
                status = chunk.get("status", "")
                # Progress bars repeat per layer many times a second; keep the milestones.
                if status and status not in {"Pushing", "Preparing", "Waiting"}:
                    layer = chunk.get("id")
                    on_output(f"{layer}: {status}\n" if layer else f"{status}\n")
        if digest is None:
            raise DockerEngineError(f"push of {repository}:{tag} reported no digest")
        return str(digest)

    def run_throwaway(
        self,
        *,
        image: str,
        command: list[str],
        labels: dict[str, str],
        timeout: int,
        limits: ContainerLimits,
        on_output: OutputSink,
        environment: dict[str, str] | None = None,
        stop: threading.Event | None = None,
        volumes: dict[str, str] | None = None,
        archive_paths: tuple[str, ...] = (),
    ) -> ContainerOutcome:
        """Run `command` in a locked-down container that is removed afterwards, whatever happens.

        No network unless asked (or the namespace of `limits.network_of`), no capabilities, no
        privilege escalation, bounded memory (no swap), processes and CPU, and no volume but
        the named ones Dockyard owns (`volumes`: name to path; never a host path, so never the
        Docker socket). The container is killed when `timeout` seconds pass or `stop` is set.
        Before it goes, each of `archive_paths` (absolute, or relative to the image's working
        folder) is read back through the engine's archive API, at most ARCHIVE_LIMIT bytes.
        """
        with self._translated_errors("test container"):
            container = self._client.containers.create(
                image=image,
                command=command,
                environment=environment or {},
                labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE},
                network_mode=self._network_mode(limits),
                volumes={
                    name: {"bind": path, "mode": "rw"} for name, path in (volumes or {}).items()
                },
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=limits.pids,
                mem_limit=limits.memory_bytes,
                memswap_limit=limits.memory_bytes,
                nano_cpus=limits.nano_cpus,
                user=limits.user or "",
                stdin_open=False,
                tty=False,
            )
            try:
                outcome = self._follow(container, timeout=timeout, stop=stop, on_output=on_output)
                if archive_paths:
                    archives = self._archives(container, archive_paths, on_output)
                    outcome = ContainerOutcome(**{**outcome.__dict__, "archives": archives})
                return outcome
            finally:
                self._remove(container)

    def namespace_holder_start(self, *, labels: dict[str, str], hosts: dict[str, str]) -> str:
        """Start a container that only holds a network namespace with nothing but a loopback,
        for a test and its services to share; `hosts` become its /etc/hosts entries (which the
        containers joining it see too). Its id; remove it with remove_container."""
        image = self._holder_image()
        with self._translated_errors("namespace holder"):
            container = self._client.containers.run(
                image=image,
                command=["/busybox", "sleep", "2147483647"],
                labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE},
                network_mode="none",
                extra_hosts=hosts,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                pids_limit=16,
                mem_limit=16 * 1024 * 1024,
                detach=True,
            )
            return str(container.id)

    def sidecar_start(
        self,
        *,
        image: str,
        command: list[str] | None,
        environment: dict[str, str],
        labels: dict[str, str],
        limits: ContainerLimits,
    ) -> str:
        """Start a long-running helper container (a test's database) under a test's limits,
        in the network namespace `limits.network_of` names; its id."""
        with self._translated_errors("service container"):
            container = self._client.containers.run(
                image=image,
                command=command,
                environment=environment,
                labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE},
                network_mode=self._network_mode(limits),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=limits.pids,
                mem_limit=limits.memory_bytes,
                memswap_limit=limits.memory_bytes,
                nano_cpus=limits.nano_cpus,
                user=limits.user or "",
                detach=True,
            )
            return str(container.id)

    def exec_run(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run `command` inside a running container: (exit code, output)."""
        with self._translated_errors("exec"):
            result = self._client.containers.get(container_id).exec_run(command, demux=False)
            output = result.output or b""
            return int(result.exit_code), output.decode("utf-8", errors="replace")

    def volume_ensure(self, name: str, *, labels: dict[str, str]) -> None:
        """A named volume Dockyard owns, made when missing."""
        with self._translated_errors("volume"):
            try:
                self._client.volumes.get(name)
            except NotFound:
                self._client.volumes.create(
                    name=name, labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE}
                )

    def volumes(self) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of every volume this installation made."""
        with self._translated_errors("volume list"):
            found = self._client.volumes.list(
                filters={"label": f"{MANAGED_LABEL}={settings.DOCKYARD_INSTANCE}"}
            )
            return [(volume.name, dict(volume.attrs.get("Labels") or {})) for volume in found]

    def volume_remove(self, name: str) -> bool:
        """Remove a volume unless a container uses it; whether it went."""
        with self._translated_errors("volume removal"):
            try:
                self._client.api.remove_volume(name)
            except NotFound:
                return False
            except APIError as error:
                if error.status_code == 409:  # in use
                    return False
                raise
        return True

    def _network_mode(self, limits: ContainerLimits) -> str:
        if limits.network_of:
            return f"container:{limits.network_of}"
        return "host" if limits.network else "none"

    def _archives(
        self, container: Any, paths: tuple[str, ...], on_output: OutputSink
    ) -> tuple[tuple[str, bytes], ...]:
        workdir = str(container.attrs.get("Config", {}).get("WorkingDir") or "/")
        found = []
        for path in paths:
            absolute = path if path.startswith("/") else posixpath.join(workdir, path)
            try:
                stream, _ = container.get_archive(absolute)
            except NotFound:
                continue
            data = bytearray()
            for chunk in stream:
                data.extend(chunk)
                if len(data) > ARCHIVE_LIMIT:
                    # What the code under test wrote is not Dockyard's to hold unbounded; the
                    # step's exit code still decides, so this is said and skipped.
                    on_output(
                        f"{absolute} holds more than {ARCHIVE_LIMIT // 2**20} MiB; "
                        "its reports are not read\n"
                    )
                    break
            else:
                found.append((path, bytes(data)))
        return tuple(found)

    def _holder_image(self) -> str:
        """The image of namespace holders: the machine's static busybox and nothing else."""
        busybox = Path(HOLDER_BUSYBOX)
        if not busybox.is_file():
            raise DockerEngineError(
                f"{HOLDER_BUSYBOX} is missing: install Debian's busybox-static (services need it)"
            )
        return self.image_from_files("dockyard/netns-holder", {"/busybox": busybox})

    def image_from_files(self, repository: str, files: dict[str, Path]) -> str:
        """An image of exactly these files of this machine (path in the image: file here), on
        nothing (FROM scratch); built once per engine, tagged by their content's hash."""
        digest = hashlib.sha256()
        for target, source in sorted(files.items()):
            digest.update(target.encode() + b"\0" + source.read_bytes() + b"\0")
        tag = f"{repository}:{digest.hexdigest()[:16]}"
        if self.image_exists(tag):
            return tag
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder) / "rootfs"
            for target, source in files.items():
                destination = root / target.lstrip("/")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, destination)
            (Path(folder) / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
            self.build_image(
                context_dir=Path(folder),
                dockerfile=Path(folder) / "Dockerfile",
                tag=tag,
                on_output=lambda _: None,
            )
        return tag

    def daemon_container_ensure(
        self,
        *,
        name: str,
        image: str,
        command: list[str],
        labels: dict[str, str],
        files: dict[str, bytes],
        directories: tuple[str, ...] = (),
    ) -> tuple[str, bool]:
        """A long-running helper of Dockyard's own on the host network (a host's HAProxy),
        running `image`: made with `files` in place when missing or of another image, started
        when stopped. Its id, and whether it was (re)made or started just now."""
        with self._translated_errors("daemon container"):
            try:
                container = self._client.containers.get(name)
            except NotFound:
                container = None
            if container is not None and (
                container.attrs.get("Config", {}).get("Image") != image
                or container.attrs.get("HostConfig", {}).get("LogConfig") != DAEMON_LOG_CONFIG
            ):
                container.remove(force=True)
                container = None
            if container is None:
                container = self._client.containers.create(
                    image=image,
                    name=name,
                    command=command,
                    labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE},
                    log_config=DAEMON_LOG_CONFIG,
                    network_mode="host",
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    restart_policy={"Name": "unless-stopped"},
                    detach=True,
                )
                for path, content in files.items():
                    self._file_put(container, path, content, directories=directories)
                container.start()
                return str(container.id), True
            if container.status != "running":
                for path, content in files.items():
                    self._file_put(container, path, content, directories=directories)
                container.start()
                return str(container.id), True
            return str(container.id), False

    def file_put(self, container_id: str, path: str, content: bytes) -> None:
        """Write a file into a container (running or not), replacing it."""
        with self._translated_errors("file copy"):
            self._file_put(self._client.containers.get(container_id), path, content)

    def file_get(self, container_id: str, path: str) -> bytes | None:
        """A file of a container, or None when it has none there."""
        with self._translated_errors("file read"):
            try:
                stream, _ = self._client.api.get_archive(container_id, path)
            except NotFound:
                return None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.extractfile(posixpath.basename(path))
                return member.read() if member is not None else None

    def container_signal(self, container_id: str, signal: str) -> None:
        with self._translated_errors("signal"):
            self._client.api.kill(container_id, signal=signal)

    def container_exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run `command` in a running container by its id, with as few requests as the API
        allows: (exit code, output)."""
        with self._translated_errors("exec"):
            created = self._client.api.exec_create(container_id, command)
            output = self._client.api.exec_start(created["Id"]) or b""
            code = self._client.api.exec_inspect(created["Id"]).get("ExitCode")
        return int(code if code is not None else -1), output.decode("utf-8", errors="replace")

    def _file_put(
        self, container: Any, path: str, content: bytes, *, directories: tuple[str, ...] = ()
    ) -> None:
        # Unpacked at the root with every parent folder in the archive: the images Dockyard
        # makes FROM scratch have no /etc/haproxy or /run until something puts them there.
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            folders = {*directories, *_parents(path)}
            for folder in sorted(folders):
                entry = tarfile.TarInfo(folder.strip("/"))
                entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                archive.addfile(entry)
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(content))
        if not container.put_archive("/", buffer.getvalue()):
            raise DockerEngineError(f"could not write {path} into container {container.name}")

    def ensure_image(self, *, reference: str, on_output: OutputSink) -> str:
        """Make `reference` (repository@digest or :tag) present on this engine; its image id."""
        info = self.image_info(reference)
        if info is not None:
            return info.id
        repository, separator, rest = reference.partition("@")
        if not separator:
            repository, _, rest = reference.rpartition(":")
        self.pull_image(repository=repository, tag=rest, on_output=on_output)
        pulled = self.image_info(reference)
        if pulled is None:
            raise DockerEngineError(f"{reference} is not on the engine after its pull")
        return pulled.id

    def start_service(
        self,
        *,
        image: str,
        name: str,
        environment: dict[str, str],
        labels: dict[str, str],
    ) -> str:
        """Start a long-running app container on the host network; returns its id.

        A container of the same name (a leftover of an interrupted deployment) is replaced.
        """
        with self._translated_errors("service container"):
            with suppress(NotFound):
                self._client.containers.get(name).remove(force=True)
            container = self._client.containers.run(
                image=image,
                name=name,
                environment=environment,
                labels={**labels, MANAGED_LABEL: settings.DOCKYARD_INSTANCE},
                network_mode="host",
                security_opt=["no-new-privileges"],
                # A small init as PID 1 passes SIGTERM on: most apps ignore it as PID 1, and a
                # stop would then wait out its whole timeout before killing them.
                init=True,
                detach=True,
            )
            return str(container.id)

    def start_container(self, container_id: str) -> None:
        """Start a stopped container again (a kept one, for a rollback)."""
        with self._translated_errors("container start"):
            self._client.containers.get(container_id).start()

    def stop_container(self, container_id: str, *, timeout: int = 10) -> None:
        """Stop a container and keep it; a missing one is already as good as stopped."""
        with self._translated_errors("container stop"), suppress(NotFound):
            self._client.containers.get(container_id).stop(timeout=timeout)

    def remove_container(self, container_id: str) -> None:
        with self._translated_errors("container removal"), suppress(NotFound):
            self._remove(self._client.containers.get(container_id))

    def container_state(self, container_id: str) -> str | None:
        """ "running", "exited", ... or None when there is no such container."""
        with self._translated_errors("container lookup"):
            try:
                container = self._client.containers.get(container_id)
            except NotFound:
                return None
            return str(container.status)

    def container_logs(self, container_id: str, *, tail: int = 40) -> str:
        with self._translated_errors("container logs"):
            try:
                container = self._client.containers.get(container_id)
            except NotFound:
                return ""
            output: bytes = container.logs(tail=tail, stdout=True, stderr=True)
            return output.decode("utf-8", errors="replace")

    def container_log_lines(
        self,
        container_id: str,
        *,
        stream: LogStream,
        since: datetime | None,
        until: datetime | None,
        tail: int | None,
    ) -> list[tuple[datetime, str]]:
        """One stream of a container's output from `since` to `until` (both included, to the
        microsecond): its last `tail` lines (None: all), each with the time the engine took it
        in. A container that is gone has none.

        The engine counts a tail among all the lines it holds, those printed after `until` too:
        from a container that went on printing, it gives back fewer lines of the span than
        asked, or none. So the span's end is kept here, and the tail read grows (eight times
        each time) until it holds what was asked or reaches back to `since` or to the log's
        first line."""
        if tail == 0:
            return []
        asked = tail or LOG_LINES_FIRST_READ
        while True:
            lines = self._log_lines(container_id, stream=stream, since=since, tail=asked)
            kept = [line for line in lines if until is None or line[0] <= until]
            if len(lines) < asked or (tail is not None and len(kept) >= tail):
                return kept if tail is None else kept[-tail:]
            asked *= 8

    def _log_lines(
        self, container_id: str, *, stream: LogStream, since: datetime | None, tail: int
    ) -> list[tuple[datetime, str]]:
        """The last `tail` lines the engine holds of one stream, those since `since` of them."""
        with self._translated_errors("container logs"):
            try:
                output: bytes = self._client.api.logs(
                    container_id,
                    stdout=stream == "stdout",
                    stderr=stream == "stderr",
                    timestamps=True,
                    # Seconds with a fraction: the SDK cuts a datetime down to the second.
                    since=since.timestamp() if since is not None else None,
                    tail=tail,
                )
            except NotFound:
                return []
        return [
            _timestamped_line(line)
            # Only "\n" ends a line: the engine split the stream there, and a "\r" (a progress
            # bar) belongs to its line.
            for line in output.decode("utf-8", errors="replace").split("\n")
            if line
        ]

    def managed_containers(self) -> list[dict[str, str]]:
        """The labels of every container this Dockyard installation started, with its id
        under "id" (other installations sharing the engine are left out)."""
        with self._translated_errors("container list"):
            containers = self._client.containers.list(
                all=True,
                sparse=True,
                filters={"label": f"{MANAGED_LABEL}={settings.DOCKYARD_INSTANCE}"},
            )
            return [
                {**(container.attrs.get("Labels") or {}), "id": container.id}
                for container in containers
            ]

    def containers(self) -> list[ContainerSummary]:
        """Every container on the engine, running or not, whoever started it."""
        with self._translated_errors("container list"):
            summaries = self._client.api.containers(all=True)
        return [
            ContainerSummary(
                id=str(summary["Id"]),
                name=str((summary.get("Names") or [""])[0]).lstrip("/"),
                image_id=str(summary.get("ImageID") or ""),
                state=str(summary.get("State") or ""),
                labels=dict(summary.get("Labels") or {}),
            )
            for summary in summaries
        ]

    def remove_stopped_container(self, container_id: str) -> bool:
        """Remove a container unless it is running (never by force); whether it went."""
        with self._translated_errors("container removal"):
            try:
                self._client.api.remove_container(container_id, v=True, force=False)
            except NotFound:
                return False
            except APIError as error:
                if error.status_code == 409:  # it runs (again): leave it
                    return False
                raise
        return True

    def images(self) -> list[LocalImage]:
        """Every named image on the engine (not the builder's intermediate layers)."""
        found = []
        with self._translated_errors("image list"):
            for summary in self._client.api.images():
                try:
                    attrs = self._client.api.inspect_image(summary["Id"])
                except NotFound:  # removed meanwhile
                    continue
                tags = [tag for tag in attrs.get("RepoTags") or () if tag != "<none>:<none>"]
                digests = [d for d in attrs.get("RepoDigests") or () if d != "<none>@<none>"]
                last_tagged = (attrs.get("Metadata") or {}).get("LastTagTime")
                found.append(
                    LocalImage(
                        id=str(attrs["Id"]),
                        tags=tuple(tags),
                        digests=tuple(digests),
                        touched_at=max(_timestamp(attrs.get("Created")), _timestamp(last_tagged)),
                        size_bytes=int(attrs.get("Size") or 0),
                    )
                )
        return found

    def remove_image(self, reference: str) -> list[str]:
        """Remove one name (repository:tag or repository@digest) of an image, never by force.

        The engine deletes the image with its last name; returns the ids it deleted (none
        while other names remain, or when a child image still builds on it).
        """
        with self._translated_errors("image removal"):
            try:
                answer = self._client.api.remove_image(reference, force=False, noprune=False)
            except NotFound:
                return []
            except APIError as error:
                if error.status_code == 409:
                    raise ImageInUse(f"{reference}: {_explain(error)}") from None
                raise
        return [str(item["Deleted"]) for item in answer or () if "Deleted" in item]

    def layers_size_bytes(self) -> int:
        """What the engine says its image layers take on disk."""
        with self._translated_errors("disk usage"):
            return int(self._client.api.df().get("LayersSize") or 0)

    def remove_containers(self, *, labels: dict[str, str]) -> int:
        """Remove every container (running or not) carrying all of `labels`; returns how many."""
        filters = [f"{key}={value}" for key, value in labels.items()]
        with self._translated_errors("container sweep"):
            # sparse: no inspect per container, which fails for one removed meanwhile.
            containers = self._client.containers.list(
                all=True, sparse=True, filters={"label": filters}
            )
            for container in containers:
                self._remove(container)
        return len(containers)

    def _follow(
        self,
        container: Any,
        *,
        timeout: int,
        stop: threading.Event | None,
        on_output: OutputSink,
    ) -> ContainerOutcome:
        ended = threading.Event()
        killed_for: list[str] = []

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while not ended.wait(0.2):
                if stop is not None and stop.is_set():
                    killed_for.append("stop")
                elif time.monotonic() >= deadline:
                    killed_for.append("timeout")
                else:
                    continue
                # It may have ended by itself in the meantime.
                with suppress(DockerException):
                    container.kill()
                return

        watcher = threading.Thread(target=watch, name="container-watch", daemon=True)
        # Attached before the start, so nothing is missed: stdout and stderr arrive as one
        # stream in the order the process wrote them. The engine's log stream would not do:
        # it cuts each stream into lines on its own, so a line half on stdout and half on
        # stderr comes apart (a secret split that way escaped masking), and a last line
        # without a newline could be dropped when the container ended.
        output = container.attach(stdout=True, stderr=True, stream=True, logs=False)
        container.start()
        watcher.start()
        try:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in output:
                on_output(decoder.decode(chunk))
            on_output(decoder.decode(b"", final=True))
            status = container.wait()
        finally:
            ended.set()
            watcher.join()
        container.reload()
        state = container.attrs.get("State", {})
        return ContainerOutcome(
            exit_code=None if killed_for else int(status.get("StatusCode", -1)),
            timed_out=killed_for == ["timeout"],
            oom_killed=bool(state.get("OOMKilled")),
            stopped=killed_for == ["stop"],
        )

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True, v=True)
        except NotFound:
            pass
        except APIError as error:
            # A cancel sweeps the run's containers while the stage removes its own: the second
            # to ask finds the first removing it, which is what both wanted.
            if not _removal_in_progress(error):
                raise

    @contextmanager
    def _translated_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DockerEngineError:
            raise
        except paramiko.SSHException as error:
            raise DockerEngineError(
                f"{action}: {ssh_failure_explained(self._base_url, error)}"
            ) from None
        except (DockerException, requests.exceptions.RequestException, OSError) as error:
            raise DockerEngineError(f"{action} on {self._base_url}: {_explain(error)}") from None


def _parents(path: str) -> list[str]:
    parent = posixpath.dirname(path)
    return [] if parent in {"/", ""} else [*_parents(parent), parent]


def _removal_in_progress(error: APIError) -> bool:
    return error.status_code == 409 and "already in progress" in str(error.explanation or "")


def _ignore_patterns(context_dir: Path) -> list[str]:
    patterns: list[str] = []
    dockerignore = context_dir / ".dockerignore"
    # Its lines travel in the context (docker-py writes them into the archive), so a link to a
    # file of this machine would put that file's content where a COPY can reach it.
    if dockerignore.is_symlink() and not dockerignore.resolve().is_relative_to(
        context_dir.resolve()
    ):
        raise ImageBuildError(".dockerignore is a link leading out of the build context; refused")
    if dockerignore.is_file():
        for line in dockerignore.read_text(errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return [*patterns, *ALWAYS_EXCLUDED]


def _timestamp(value: object) -> datetime:
    """An engine timestamp (RFC 3339 with nanoseconds); the epoch when absent or zero."""
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _timestamped_line(line: str) -> tuple[datetime, str]:
    """ "2024-05-01T12:34:56.123456789Z text" (the engine's log line with its time) as the time,
    to the microsecond, and the text."""
    stamp, _, text = line.partition(" ")
    try:
        return datetime.fromisoformat(stamp), text
    except ValueError:  # not the engine's stamp after all: keep the whole line
        return datetime.fromtimestamp(0, UTC), line


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)


# --- How an engine is reached: a local socket, TCP with TLS, or SSH ----------------------------


class EngineConnectionError(Exception):
    """The engine cannot be reached the way its URL says; the message says what to fix."""


# The API version each engine speaks, asked once per process: a client made with "auto" asks
# the engine first, a round trip before every stage's first call. An engine upgraded meanwhile
# still speaks the older version.
_api_versions: dict[str, str] = {}


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
        client = docker.DockerClient(
            base_url=base_url,
            timeout=timeout,
            tls=False,
            use_ssh_client=False,
            version=_api_versions.get(base_url, "auto"),
        )
        _api_versions[base_url] = client.api.api_version
        return client
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
    if base_url not in _api_versions:
        _api_versions[base_url] = client.api._retrieve_server_version()
    client.api._version = _api_versions[base_url]
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
