"""A stage's log: masked, and written to the database as the output arrives, in numbered chunks.

Only the thread that runs the stage touches the database. Output produced on other threads (a
container's output reader inside `stream()`, test steps running side by side) is handed over
through a queue; the stage's thread writes it out every half second, and in between asks
whether the run was cancelled. A stage's log may have sections (its test steps): each is
masked on its own and written in chunks of its own, so a reader can fold it.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db.models import Max

from pipelines.live_updates import log_event, run_event_publish
from pipelines.models import LogChunk, Stage
from projects.secret_masking import SecretMasker

# Often enough that a reader sees output as it happens, rarely enough that a chatty build does
# not turn into a write per line.
FLUSH_INTERVAL_SECONDS = 0.5
FLUSH_SIZE = 64 * 1024
STOP_CHECK_INTERVAL_SECONDS = 1.0

T = TypeVar("T")


class StageLog:
    """The output of one stage; one writer per stage at a time."""

    def __init__(
        self,
        stage: Stage,
        *,
        secrets: Iterable[str] = (),
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._stage = stage
        self._owner = threading.get_ident()
        # (section, text, whether it is a whole line of Dockyard's own)
        self._incoming: queue.SimpleQueue[tuple[str, str, bool]] = queue.SimpleQueue()
        self._secrets = tuple(secrets)
        self._maskers: dict[str, SecretMasker] = {}
        # Masked text waiting to be written, in arrival order, by section.
        self._masked: list[tuple[str, str]] = []
        self._masked_size = 0
        self._last_flush = time.monotonic()
        self._should_stop = should_stop
        # Set when the run was cancelled: work inside stream() should stop as soon as it can.
        self.stop_requested = threading.Event()
        last = LogChunk.objects.filter(run_id=stage.run_id).aggregate(last=Max("seq"))["last"]
        self._next_seq = (last or 0) + 1

    def write(self, text: str) -> None:
        """Add output; safe to call from any thread."""
        self._put("", text)

    def line(self, text: str) -> None:
        """Add a whole line of Dockyard's own."""
        self._put("", text if text.endswith("\n") else text + "\n", whole=True)

    def section(self, name: str) -> "SectionLog":
        """A writer for one part of the stage (a test step), safe to use from any thread while
        this log's stream() runs."""
        return SectionLog(self, name)

    def stream(self, work: Callable[[], T]) -> T:
        """Run `work` on a helper thread, writing its output meanwhile; returns what it returns."""
        results: list[T] = []
        errors: list[BaseException] = []

        def run_work() -> None:
            try:
                results.append(work())
            except BaseException as error:
                errors.append(error)

        helper = threading.Thread(target=run_work, name="stage-work", daemon=True)
        helper.start()
        next_stop_check = time.monotonic() + STOP_CHECK_INTERVAL_SECONDS
        while helper.is_alive():
            helper.join(timeout=FLUSH_INTERVAL_SECONDS / 2)
            self._flush_if_due()
            if self._should_stop and time.monotonic() >= next_stop_check:
                next_stop_check = time.monotonic() + STOP_CHECK_INTERVAL_SECONDS
                if not self.stop_requested.is_set() and self._should_stop():
                    self.stop_requested.set()
        self.flush()
        if errors:
            raise errors[0]
        return results[0]

    def flush(self) -> None:
        self._drain(final=False)
        self._write_chunks()

    def close(self) -> None:
        """Write out everything, including text held back in case it began a secret."""
        self._drain(final=True)
        self._write_chunks()

    def _put(self, section: str, text: str, *, whole: bool = False) -> None:
        if text:
            self._incoming.put((section, text, whole))
        if threading.get_ident() == self._owner:
            self._flush_if_due()

    def _flush_if_due(self) -> None:
        self._drain(final=False)
        if self._masked_size >= FLUSH_SIZE or (
            self._masked and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_SECONDS
        ):
            self._write_chunks()

    def _drain(self, *, final: bool) -> None:
        arrived: list[tuple[str, str, bool]] = []
        while True:
            try:
                arrived.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        for section, text, whole in arrived:
            masker = self._masker(section)
            self._keep(section, masker.feed(text))
            if whole:
                # No secret continues past a line of Dockyard's own: nothing need wait for the
                # next piece (which may come much later, after other sections' output).
                self._keep(section, masker.finish())
        if final:
            for section, masker in self._maskers.items():
                self._keep(section, masker.finish())

    def _masker(self, section: str) -> SecretMasker:
        # One per section: two steps' outputs interleave, and neither may hold back the other.
        if section not in self._maskers:
            self._maskers[section] = SecretMasker(self._secrets)
        return self._maskers[section]

    def _keep(self, section: str, masked: str) -> None:
        if not masked:
            return
        if self._masked and self._masked[-1][0] == section:
            self._masked[-1] = (section, self._masked[-1][1] + masked)
        else:
            self._masked.append((section, masked))
        self._masked_size += len(masked)

    def _write_chunks(self) -> None:
        self._last_flush = time.monotonic()
        pending, self._masked, self._masked_size = self._masked, [], 0
        for section, masked in pending:
            # PostgreSQL text cannot hold NUL; a binary-spewing test must not crash the log.
            text = masked.replace("\x00", "\ufffd")
            chunk = LogChunk.objects.create(
                run_id=self._stage.run_id,
                stage=self._stage,
                seq=self._next_seq,
                text=text,
                section=section,
            )
            self._next_seq += 1
            # Stored first, then sent: a browser that misses this reads it back from the database.
            run_event_publish(self._stage.run_id, log_event(chunk, self._stage.name))


class SectionLog:
    """One section of a stage's log (a test step): writes from any thread; its stream() runs
    the work in the calling thread, the stage log's own stream() writing everything out."""

    def __init__(self, log: StageLog, name: str) -> None:
        self._log = log
        self.name = name
        self.stop_requested = log.stop_requested

    def write(self, text: str) -> None:
        self._log._put(self.name, text)

    def line(self, text: str) -> None:
        """Add a whole line of Dockyard's own."""
        self._log._put(self.name, text if text.endswith("\n") else text + "\n", whole=True)

    def stream(self, work: Callable[[], T]) -> T:
        return work()
