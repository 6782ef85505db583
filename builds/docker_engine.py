"""The Docker engine adapter: build images, run throwaway containers, push to a registry.

The only module that imports the Docker SDK. Its errors become DockerEngineError (or
ImageBuildError for a build that failed because of the Dockerfile). Every container it starts
carries Dockyard's labels, so that a sweep by label finds any that outlived its run.
"""

import codecs
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound

MANAGED_LABEL = "dockyard.managed"

OutputSink = Callable[[str], None]


class DockerEngineError(Exception):
    """The engine could not be reached or refused a request."""


class ImageBuildError(DockerEngineError):
    """The image did not build: a failing RUN step, a missing file, a bad Dockerfile."""


@dataclass(frozen=True)
class ContainerLimits:
    memory_bytes: int = 512 * 1024 * 1024
    pids: int = 256
    nano_cpus: int = 1_000_000_000
    network: bool = False
    user: str | None = None


@dataclass(frozen=True)
class ContainerOutcome:
    exit_code: int | None
    timed_out: bool
    oom_killed: bool


class DockerEngine:
    """One connection to one engine; use it as a context manager so the connection is closed."""

    def __init__(self, base_url: str, *, timeout: int = 300) -> None:
        self._base_url = base_url
        try:
            self._client = docker.DockerClient(base_url=base_url, timeout=timeout)
        except DockerException as error:
            raise DockerEngineError(
                f"cannot reach the Docker engine at {base_url}: {error}"
            ) from None

    def __enter__(self) -> "DockerEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def build_image(
        self,
        *,
        context_dir: Path,
        dockerfile: str,
        tag: str,
        labels: dict[str, str],
        on_output: OutputSink,
        buildargs: dict[str, str] | None = None,
    ) -> str:
        """Build and tag an image, streaming the builder's output; returns the image id."""
        image_id = None
        with self._translated_errors("build"):
            stream = self._client.api.build(
                path=str(context_dir),
                dockerfile=dockerfile,
                tag=tag,
                labels={**labels, MANAGED_LABEL: "true"},
                buildargs=buildargs or {},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
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

    def image_exists(self, reference: str) -> bool:
        with self._translated_errors("image lookup"):
            try:
                self._client.images.get(reference)
            except ImageNotFound:
                return False
        return True

    def run_throwaway(
        self,
        *,
        image: str,
        command: list[str],
        labels: dict[str, str],
        timeout: int,
        limits: ContainerLimits,
        on_output: OutputSink,
    ) -> ContainerOutcome:
        """Run `command` in a locked-down container that is removed afterwards, whatever happens."""
        with self._translated_errors("test container"):
            container = self._client.containers.create(
                image=image,
                command=command,
                labels={**labels, MANAGED_LABEL: "true"},
                network_mode="host" if limits.network else "none",
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
                return self._follow(container, timeout=timeout, on_output=on_output)
            finally:
                self._remove(container)

    def push_image(self, *, image_id: str, repository: str, tag: str, on_output: OutputSink) -> str:
        """Tag the image as repository:tag and push it; returns the manifest digest."""
        digest = None
        with self._translated_errors("push"):
            self._client.images.get(image_id).tag(repository, tag)
            stream = self._client.api.push(repository, tag=tag, stream=True, decode=True)
            for chunk in stream:
                if "error" in chunk:
                    raise DockerEngineError(f"push of {repository}:{tag} failed: {chunk['error']}")
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

    def remove_containers(self, *, labels: dict[str, str]) -> int:
        """Remove every container (running or not) carrying all of `labels`; returns how many."""
        filters = [f"{key}={value}" for key, value in labels.items()]
        with self._translated_errors("container sweep"):
            containers = self._client.containers.list(all=True, filters={"label": filters})
            for container in containers:
                self._remove(container)
        return len(containers)

    def _follow(self, container: Any, *, timeout: int, on_output: OutputSink) -> ContainerOutcome:
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            timed_out.set()
            # It may have ended by itself in the meantime.
            with suppress(DockerException):
                container.kill()

        killer = threading.Timer(timeout, kill_on_timeout)
        killer.daemon = True
        container.start()
        killer.start()
        try:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                on_output(decoder.decode(chunk))
            on_output(decoder.decode(b"", final=True))
            status = container.wait()
        finally:
            killer.cancel()
        container.reload()
        state = container.attrs.get("State", {})
        return ContainerOutcome(
            exit_code=None if timed_out.is_set() else int(status.get("StatusCode", -1)),
            timed_out=timed_out.is_set(),
            oom_killed=bool(state.get("OOMKilled")),
        )

    def _remove(self, container: Any) -> None:
        with suppress(NotFound):
            container.remove(force=True, v=True)

    @contextmanager
    def _translated_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DockerEngineError:
            raise
        except (DockerException, requests.exceptions.RequestException) as error:
            raise DockerEngineError(f"{action} on {self._base_url}: {_explain(error)}") from None


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
