"""Reading app logs from the engines, in a deploy worker: it holds the engines' credentials
(its ssh set-up, DOCKER_CERT_PATH), and the web process asks it over Redis (AppLogRelay serves
releases.app_logs.RelayedAppLogReader). Loads the engine adapter."""

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from django.db import close_old_connections, connection

from infrastructure.docker_engine import (
    DockerEngine,
    DockerEngineError,
    EngineFactory,
    KeptEngines,
)
from infrastructure.redis_requests import requests_serve
from releases.app_logs import (
    DOCKYARD_STREAM,
    ENGINE_PRECISION,
    MOST_LINES,
    RELAY_QUEUE,
    STREAMS,
    AppLogLine,
    AppLogRefused,
    AppLogSources,
    app_log_line,
    app_log_line_json,
    app_log_sources,
    search_refusal,
)
from releases.models import Environment
from releases.selectors import LiveContainer

logger = logging.getLogger(__name__)

# An engine that does not answer gets a line saying so within seconds, not after the minutes a
# build or a pull may wait.
ENGINE_TIMEOUT_SECONDS = 5
# Reads one deploy worker does side by side (each viewer asks once a second).
RELAY_THREADS = 4


def log_engine(url: str) -> DockerEngine:
    """An engine connection for reading logs: it gives up on a silent engine within seconds."""
    return DockerEngine(url, timeout=ENGINE_TIMEOUT_SECONDS)


class AppLogReader:
    """Reads the live containers' output through their engines. Each engine stays open until
    close(): a live view reads every second, and a connection over ssh costs a handshake.

    Reads no database: a live view runs it on a thread of its own, away from the event loop and
    from the thread its database work runs on.
    """

    def __init__(self, *, engines: EngineFactory = log_engine) -> None:
        self._engines = KeptEngines(engines)

    def __enter__(self) -> "AppLogReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._engines.close()

    def read(
        self,
        sources: AppLogSources,
        *,
        since: datetime | None,
        until: datetime,
        tail: int,
        search: str = "",
    ) -> list[AppLogLine]:
        """The last `tail` lines printed after `since` (from the start, without one) and up to
        `until`, oldest first, masked, and holding `search`; a host that did not answer gives
        a line saying so instead of its lines."""
        needle = search.casefold()
        # A search looks further back than the lines it returns: the matches are fewer.
        depth = MOST_LINES if needle else tail
        lines: list[AppLogLine] = []
        unanswered: list[AppLogLine] = []
        failed_hosts: set[str] = set()
        for container in sources.containers:
            host = container.host
            if host.name in failed_hosts:
                continue
            try:
                # Whole or not at all: a container whose stderr failed after its stdout came.
                lines += list(
                    self._container_lines(container, since, until, depth, sources, needle)
                )
            except DockerEngineError as error:
                failed_hosts.add(host.name)
                unanswered.append(
                    app_log_line(
                        container,
                        until,
                        DOCKYARD_STREAM,
                        f"the logs on {host.name} could not be read: {error}",
                        sources,
                    )
                )
        lines.sort(key=lambda line: line.at)
        return lines[-tail:] + unanswered if tail else unanswered

    def _container_lines(
        self,
        container: LiveContainer,
        since: datetime | None,
        until: datetime,
        depth: int,
        sources: AppLogSources,
        needle: str,
    ) -> Iterator[AppLogLine]:
        # An engine that fails is closed as the error leaves this block: the next read
        # connects again.
        with self._engines(container.host.engine) as engine:
            for stream in STREAMS:
                for at, text in engine.container_log_lines(
                    container.container_id,
                    stream=stream,
                    since=since,
                    # The engine keeps nanoseconds and `at` has microseconds: a line at
                    # 12.0000005 is at 12.000000 here, and belongs to the read that ends at
                    # 12.000000.
                    until=until + ENGINE_PRECISION,
                    tail=depth,
                ):
                    # After `since` (where the last read stopped, its `until` included), up to
                    # `until`: each line in exactly one read.
                    if (since is not None and at <= since) or at > until:
                        continue
                    line = app_log_line(container, at, stream, text, sources)
                    # Searched once masked: a search must not tell whether a secret is there.
                    if needle in line.text.casefold():
                        yield line


def app_log_request_answered(payload: dict[str, Any], *, reader: "AppLogReader") -> dict[str, Any]:
    """The answer to one request of RelayedAppLogReader: its lines, or why not."""
    search = str(payload.get("search") or "")
    refusal = search_refusal(search)
    if refusal:
        return {"refused": refusal}
    try:
        sources = app_log_sources(int(payload["environment_id"]), host=str(payload["host"]))
    except (Environment.DoesNotExist, AppLogRefused) as error:
        return {"refused": str(error) or "no such environment"}
    finally:
        close_old_connections()
    since = payload.get("since")
    lines = reader.read(
        sources,
        since=datetime.fromtimestamp(since, UTC) if since is not None else None,
        until=datetime.fromtimestamp(payload["until"], UTC),
        tail=min(int(payload["tail"]), MOST_LINES),
        search=search,
    )
    return {"lines": [app_log_line_json(line) for line in lines]}


class AppLogRelay(threading.Thread):
    """A thread of each deploy worker's main process that answers the web processes' app log
    requests; whichever deploy worker pops a request answers it."""

    def __init__(self) -> None:
        super().__init__(name="dockyard-app-log-relay", daemon=True)
        self.stopping = threading.Event()
        self._local = threading.local()

    def run(self) -> None:
        with ThreadPoolExecutor(RELAY_THREADS, thread_name_prefix="app-logs") as pool:
            try:
                requests_serve(RELAY_QUEUE, self._answer, stopping=self.stopping, run=pool.submit)
            finally:
                connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def _answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        # One reader on each thread: its engines stay open from one request to the next (a
        # live view asks every second, and a connection over ssh costs a handshake).
        if not hasattr(self._local, "reader"):
            self._local.reader = AppLogReader()
        try:
            return app_log_request_answered(payload, reader=self._local.reader)
        except Exception as error:
            logger.exception("reading app logs for %s", payload)
            return {"refused": f"the app logs could not be read: {error}"}
