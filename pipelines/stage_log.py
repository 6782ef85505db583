"""A stage's log, written to the database as the output arrives, in numbered chunks."""

import time

from django.db.models import Max

from pipelines.models import LogChunk, Stage

# Often enough that a reader sees output as it happens, rarely enough that a chatty build does
# not turn into a write per line.
FLUSH_INTERVAL_SECONDS = 0.5
FLUSH_SIZE = 64 * 1024


class StageLog:
    """Buffers output and appends it as LogChunk rows; one writer per stage at a time."""

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        last = LogChunk.objects.filter(run_id=stage.run_id).aggregate(last=Max("seq"))["last"]
        self._next_seq = (last or 0) + 1
        self._buffer: list[str] = []
        self._buffered = 0
        self._last_flush = time.monotonic()

    def write(self, text: str) -> None:
        if not text:
            return
        self._buffer.append(text)
        self._buffered += len(text)
        if (
            self._buffered >= FLUSH_SIZE
            or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_SECONDS
        ):
            self.flush()

    def line(self, text: str) -> None:
        self.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer, self._buffered = [], 0
        LogChunk.objects.create(
            run_id=self._stage.run_id, stage=self._stage, seq=self._next_seq, text=text
        )
        self._next_seq += 1

    def close(self) -> None:
        self.flush()
