"""A stage's log: masked, and written to the database as the output arrives, in numbered chunks.

Only the thread that runs the stage touches the database. Output produced on other threads (a
container's output reader inside `stream()`) is handed over through a queue; the stage's thread
writes it out every half second, and in between asks whether the run was cancelled.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db.models import Max

from pipelines.live_updates import log_event, run_event_publish
from pipelines.log_masking import SecretMasker
from pipelines.models import LogChunk, Stage

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
        self._incoming: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._masker = SecretMasker(secrets)
        self._masked: list[str] = []
        self._masked_size = 0
        self._last_flush = time.monotonic()
        self._should_stop = should_stop
        # Set when the run was cancelled: work inside stream() should stop as soon as it can.
        self.stop_requested = threading.Event()
        last = LogChunk.objects.filter(run_id=stage.run_id).aggregate(last=Max("seq"))["last"]
        self._next_seq = (last or 0) + 1

    def write(self, text: str) -> None:
        """Add output; safe to call from any thread."""
        if text:
            self._incoming.put(text)
        if threading.get_ident() == self._owner:
            self._flush_if_due()

    def line(self, text: str) -> None:
        self.write(text if text.endswith("\n") else text + "\n")

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
        self._write_chunk()

    def close(self) -> None:
        """Write out everything, including text held back in case it began a secret."""
        self._drain(final=True)
        self._write_chunk()

    def _flush_if_due(self) -> None:
        self._drain(final=False)
        if self._masked_size >= FLUSH_SIZE or (
            self._masked and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_SECONDS
        ):
            self._write_chunk()

    def _drain(self, *, final: bool) -> None:
        pieces: list[str] = []
        while True:
            try:
                pieces.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        masked = self._masker.feed("".join(pieces)) if pieces else ""
        if final:
            masked += self._masker.finish()
        if masked:
            self._masked.append(masked)
            self._masked_size += len(masked)

    def _write_chunk(self) -> None:
        self._last_flush = time.monotonic()
        if not self._masked:
            return
        # PostgreSQL text cannot hold NUL; a binary-spewing test must not crash the log.
        text = "".join(self._masked).replace("\x00", "\ufffd")
        self._masked, self._masked_size = [], 0
        chunk = LogChunk.objects.create(
            run_id=self._stage.run_id, stage=self._stage, seq=self._next_seq, text=text
        )
        self._next_seq += 1
        # Stored first, then sent: a browser that misses this reads it back from the database.
        run_event_publish(self._stage.run_id, log_event(chunk, self._stage.name))
