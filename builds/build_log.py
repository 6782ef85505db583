"""What the builds app writes its output to: a stage's log, as pipelines.stage_log.StageLog
provides it (masked, stored as it comes, and asking whether the run was cancelled)."""

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class BuildLog(Protocol):
    # Set when the run was cancelled: work inside stream() should stop as soon as it can.
    stop_requested: threading.Event

    def write(self, text: str) -> None:
        """Add output; safe to call from any thread."""

    def line(self, text: str) -> None:
        """Add one line."""

    def stream(self, work: Callable[[], T]) -> T:
        """Run `work` on a helper thread, writing its output meanwhile; returns its result."""
