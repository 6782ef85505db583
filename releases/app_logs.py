"""An environment's app logs: what its live containers print, on each host, stdout and stderr,
merged by time, with the project's secrets masked.

Read from the engines when asked (`docker logs`), never stored: each engine keeps them as long
as its log driver does. The engines are read by a deploy worker (releases.app_log_reading),
which holds their credentials; the web process asks it over Redis (infrastructure.redis_requests)
and loads no engine adapter.

Every read stops at a horizon a second in the past (SETTLE), and the next read starts there: a
line the engine is still writing when one stream or host is read, while a later line of
another is already there, would otherwise fall between two reads. The hosts' clocks must
agree to within that second (NTP keeps them much closer).
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from django.utils import timezone

from infrastructure.redis_requests import RequestUnanswered, request_answer
from projects.secret_masking import mask_secrets
from projects.selectors import project_secrets
from releases.models import Environment
from releases.selectors import LiveContainer, live_containers

STREAMS: tuple[Literal["stdout"], Literal["stderr"]] = ("stdout", "stderr")
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
LONGEST_SEARCH = 200
# The deploy workers' list of app log requests, and how long a web process waits for one to
# answer (an engine that does not answer gives a line saying so within 5 s: well within it).
RELAY_QUEUE = "dockyard:app-log-requests"
RELAY_TIMEOUT_SECONDS = 15


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


def log_horizon() -> datetime:
    """Where a read that starts now stops (see SETTLE)."""
    return timezone.now() - SETTLE


def search_refusal(search: str) -> str:
    """Why `search` cannot be searched for ("" when it can)."""
    if len(search) > LONGEST_SEARCH or "\x00" in search:
        return f"search for at most {LONGEST_SEARCH} characters, without NUL"
    return ""


class LogReader(Protocol):
    def read(
        self,
        sources: AppLogSources,
        *,
        since: datetime | None,
        until: datetime,
        tail: int,
    ) -> list[AppLogLine]:
        """The last `tail` lines printed after `since` and up to `until`, oldest first."""

    def close(self) -> None: ...


class AppLogUnavailable(Exception):
    """No deploy worker answered for the engines; the message says so."""


class RelayedAppLogReader:
    """Reads through a deploy worker (releases.app_log_reading.AppLogRelay), which reads the
    engines, masks and searches, and answers over Redis."""

    def __init__(self, *, environment_id: int, host: str = "", search: str = "") -> None:
        self._environment_id, self._host, self._search = environment_id, host, search

    def read(
        self, sources: AppLogSources, *, since: datetime | None, until: datetime, tail: int
    ) -> list[AppLogLine]:
        if not sources.containers:
            return []  # nothing runs there: no engine to ask
        try:
            answer = request_answer(
                RELAY_QUEUE,
                {
                    "environment_id": self._environment_id,
                    "host": self._host,
                    "search": self._search,
                    "since": since.timestamp() if since is not None else None,
                    "until": until.timestamp(),
                    "tail": tail,
                },
                timeout=RELAY_TIMEOUT_SECONDS,
            )
        except RequestUnanswered as error:
            raise AppLogUnavailable(
                f"no deploy worker read the app logs ({error}); is one running?"
            ) from None
        if "refused" in answer:
            raise AppLogRefused(answer["refused"])
        return [app_log_line_from_json(line) for line in answer["lines"]]

    def close(self) -> None:
        pass


class AppLogFollower:
    """What a live view shows: the backlog, then, read after read, the lines printed since.

    Tells of a host that does not answer once, not at every read, and again once it answered
    and then stopped."""

    def __init__(self, reader: LogReader) -> None:
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
        try:
            lines = self._reader.read(sources, since=self._since, until=until, tail=tail)
        except AppLogUnavailable as error:
            # Said once; the next read starts where this one would have: nothing is lost.
            said = self._unanswered.get("") == str(error)
            self._unanswered[""] = str(error)
            return [] if said else [_dockyard_line(until, str(error))]
        self._unanswered.pop("", None)
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
    reader = RelayedAppLogReader(environment_id=environment.pk, host=host, search=search)
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


def _dockyard_line(at: datetime, text: str) -> AppLogLine:
    return AppLogLine(
        at=at, host="", slot="", release=0, replica=0, stream=DOCKYARD_STREAM, text=text
    )


def app_log_line_from_json(line: dict[str, Any]) -> AppLogLine:
    return AppLogLine(
        at=datetime.fromisoformat(line["at"]),
        host=line["host"],
        slot=line["slot"],
        release=line["release"],
        replica=line["replica"],
        stream=line["stream"],
        text=line["text"],
    )


def app_log_line(
    container: LiveContainer, at: datetime, stream: str, text: str, sources: AppLogSources
) -> AppLogLine:
    """A line a container printed, with where it ran, masked."""
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
