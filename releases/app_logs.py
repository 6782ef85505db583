"""An environment's app logs: what its live containers print, on each host, stdout and stderr,
merged by time, with the project's secrets masked.

Read from the engines when asked (`docker logs`), never stored: each engine keeps them as long
as its log driver does. This module loads the engine adapter (the Docker SDK and paramiko), so
the web process imports it only inside the views and the consumer that read logs.

Every read stops at a horizon a second in the past (SETTLE), and the next read starts there: a
line the engine is still writing when one stream or host is read, while a later line of
another is already there, would otherwise fall between two reads. The hosts' clocks must
agree to within that second (NTP keeps them much closer).
"""

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from infrastructure.docker_engine import (
    ContainerEngine,
    DockerEngine,
    DockerEngineError,
    EngineFactory,
    LogStream,
)
from projects.secret_masking import mask_secrets
from projects.selectors import project_secrets
from releases.models import Environment
from releases.selectors import LiveContainer, live_containers

STREAMS: tuple[LogStream, ...] = ("stdout", "stderr")
# The stream of Dockyard's own lines among the app's: a host whose engine did not answer.
DOCKYARD_STREAM = "dockyard"
SETTLE = timedelta(seconds=1)
# Past `until` by a little more than the microsecond lost, with room for the float it travels as.
ENGINE_PRECISION = timedelta(microseconds=2)
# What a live view opens with, and the most one read returns (per stream of each container,
# and in all): a flood beyond it in one second of following is skipped, not queued.
BACKLOG_LINES = 200
MOST_LINES = 5000
# A download: the newest lines the engines hold, up to this many.
DOWNLOAD_LINES = 20_000
# An engine that does not answer gets a line saying so within seconds, not after the minutes a
# build or a pull may wait.
ENGINE_TIMEOUT_SECONDS = 5
LONGEST_SEARCH = 200


class AppLogRefused(Exception):
    """The request names something the environment does not have; the message says what."""


@dataclass(frozen=True)
class AppLogLine:
    at: datetime
    host: str
    slot: str
    release: int
    # Which of the release's containers on the host (from 1; most run one).
    replica: int
    # stdout, stderr, or dockyard (a line of Dockyard's own: a host that did not answer).
    stream: str
    text: str


@dataclass(frozen=True)
class AppLogSources:
    """Where an environment's app logs are read from, and what they must not show."""

    containers: list[LiveContainer]
    secrets: list[str]


@dataclass(frozen=True)
class AppLogPage:
    lines: list[AppLogLine]
    # Where the next read starts (its `since`): this read's horizon.
    next_since: datetime


def app_log_sources(environment_id: int, *, host: str = "") -> AppLogSources:
    """The live containers of the environment (on `host` only, when named) and the secrets of
    its project that it runs with. Raises AppLogRefused for a host it does not run on, and
    Environment.DoesNotExist once it is gone."""
    environment = Environment.objects.select_related("project").get(pk=environment_id)
    if host and not environment.hosts.filter(name=host).exists():
        raise AppLogRefused(f"{environment.name} does not run on a host named {host!r}")
    containers = [
        container
        for container in live_containers(environment)
        if not host or container.host.name == host
    ]
    secrets = project_secrets(environment.project, environment.secret_names)
    return AppLogSources(containers=containers, secrets=list(secrets.values()))


def log_engine(url: str) -> DockerEngine:
    """An engine connection for reading logs: it gives up on a silent engine within seconds."""
    return DockerEngine(url, timeout=ENGINE_TIMEOUT_SECONDS)


def log_horizon() -> datetime:
    """Where a read that starts now stops (see SETTLE)."""
    return timezone.now() - SETTLE


def search_refusal(search: str) -> str:
    """Why `search` cannot be searched for ("" when it can)."""
    if len(search) > LONGEST_SEARCH or "\x00" in search:
        return f"search for at most {LONGEST_SEARCH} characters, without NUL"
    return ""


class AppLogReader:
    """Reads the live containers' output through their engines. Each engine stays open until
    close(): a live view reads every second, and a connection over ssh costs a handshake.

    Reads no database: a live view runs it on a thread of its own, away from the event loop and
    from the thread its database work runs on.
    """

    def __init__(self, *, search: str = "", engines: EngineFactory = log_engine) -> None:
        self._needle = search.casefold()
        self._engines = engines
        self._open: dict[str, tuple[ExitStack, ContainerEngine]] = {}

    def __enter__(self) -> "AppLogReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for stack, _ in self._open.values():
            stack.close()
        self._open.clear()

    def read(
        self, sources: AppLogSources, *, since: datetime | None, until: datetime, tail: int
    ) -> list[AppLogLine]:
        """The last `tail` lines printed after `since` (from the start, without one) and up to
        `until`, oldest first, masked, and holding the search; a host that did not answer gives
        a line saying so instead of its lines."""
        # A search looks further back than the lines it returns: the matches are fewer.
        depth = MOST_LINES if self._needle else tail
        lines: list[AppLogLine] = []
        unanswered: list[AppLogLine] = []
        failed_hosts: set[str] = set()
        for container in sources.containers:
            host = container.host
            if host.name in failed_hosts:
                continue
            try:
                # Whole or not at all: a container whose stderr failed after its stdout came.
                lines += list(self._container_lines(container, since, until, depth, sources))
            except DockerEngineError as error:
                self._forget(host.engine)
                failed_hosts.add(host.name)
                unanswered.append(
                    _line(
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
    ) -> Iterator[AppLogLine]:
        engine = self._engine(container.host.engine)
        for stream in STREAMS:
            for at, text in engine.container_log_lines(
                container.container_id,
                stream=stream,
                since=since,
                # The engine keeps nanoseconds and `at` has microseconds: a line at 12.0000005
                # is at 12.000000 here, and belongs to the read that ends at 12.000000.
                until=until + ENGINE_PRECISION,
                tail=depth,
            ):
                # After `since` (where the last read stopped, its `until` included), up to
                # `until`: each line in exactly one read.
                if (since is not None and at <= since) or at > until:
                    continue
                line = _line(container, at, stream, text, sources)
                # Searched once masked: a search must not tell whether a secret is there.
                if self._needle in line.text.casefold():
                    yield line

    def _engine(self, url: str) -> ContainerEngine:
        if url not in self._open:
            stack = ExitStack()
            engine = stack.enter_context(self._engines(url))
            self._open[url] = (stack, engine)
        return self._open[url][1]

    def _forget(self, url: str) -> None:
        """Close an engine that failed: the next read connects again."""
        if url in self._open:
            stack, _ = self._open.pop(url)
            stack.close()


class AppLogFollower:
    """What a live view shows: the backlog, then, read after read, the lines printed since.

    Tells of a host that does not answer once, not at every read, and again once it answered
    and then stopped."""

    def __init__(self, reader: AppLogReader) -> None:
        self._reader = reader
        self._since: datetime | None = None
        self._unanswered: dict[str, str] = {}

    def backlog(self, sources: AppLogSources, *, lines: int = BACKLOG_LINES) -> list[AppLogLine]:
        return self._read(sources, tail=lines)

    def close(self) -> None:
        self._reader.close()

    def newer(self, sources: AppLogSources) -> list[AppLogLine]:
        """The lines printed since the last read (the backlog, or the read before)."""
        return self._read(sources, tail=MOST_LINES)

    def _read(self, sources: AppLogSources, *, tail: int) -> list[AppLogLine]:
        until = log_horizon()
        if self._since is not None and until <= self._since:  # the clock went back
            return []
        lines = self._reader.read(sources, since=self._since, until=until, tail=tail)
        self._since = until
        shown: list[AppLogLine] = []
        answered = {container.host.name for container in sources.containers}
        for line in lines:
            if line.stream == DOCKYARD_STREAM:
                answered.discard(line.host)
                if self._unanswered.get(line.host) == line.text:
                    continue
                self._unanswered[line.host] = line.text
            shown.append(line)
        for host in answered:
            self._unanswered.pop(host, None)
        return shown


def app_log_read(
    environment: Environment,
    *,
    since: datetime | None = None,
    host: str = "",
    search: str = "",
    tail: int = BACKLOG_LINES,
) -> AppLogPage:
    """The environment's app log lines after `since` (the last `tail` of them), on `host` or on
    every host, holding `search`; with where the next read should start."""
    sources = app_log_sources(environment.pk, host=host)
    until = log_horizon()
    with AppLogReader(search=search) as reader:
        lines = reader.read(sources, since=since, until=until, tail=tail)
    return AppLogPage(lines=lines, next_since=until)


def app_log_line_json(line: AppLogLine) -> dict[str, Any]:
    """A line as the live view's socket sends it (and the API answers it)."""
    return {
        "at": _iso(line.at),
        "host": line.host,
        "slot": line.slot,
        "release": line.release,
        "replica": line.replica,
        "stream": line.stream,
        "text": line.text,
    }


def app_log_line_text(line: AppLogLine) -> str:
    """A line of the downloaded log: when, where (replica past the first: #2), which stream,
    then what it said."""
    replica = f" #{line.replica}" if line.replica > 1 else ""
    where = f"{line.host} {line.slot} r{line.release}{replica}"
    return f"{_iso(line.at)} {where} {line.stream}: {line.text}\n"


# ISO 8601 (2024-05-01T12:34:56.123Z, with an offset, or just a date) or seconds since 1970.
_UNIX_SECONDS = re.compile(r"\d{1,12}(\.\d{1,9})?")


def log_since_parsed(text: str) -> datetime:
    """A `since` as a client writes it: ISO 8601 (a time without an offset is UTC) or unix
    seconds. Raises ValueError saying what is accepted."""
    text = text.strip()
    if _UNIX_SECONDS.fullmatch(text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither ISO 8601 (2024-05-01T12:34:56Z) nor unix seconds"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _line(
    container: LiveContainer, at: datetime, stream: str, text: str, sources: AppLogSources
) -> AppLogLine:
    return AppLogLine(
        at=at,
        host=container.host.name,
        slot=container.slot,
        release=container.release_number,
        replica=container.replica,
        stream=stream,
        text=mask_secrets(text, sources.secrets),
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
