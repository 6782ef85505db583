"""A Celery worker's event loop woken at once by what its pool threads hand to it.

A pool thread that finished a task hands its acknowledgement to the worker's event loop
(`hub.call_soon`), and only then does the worker take its next task (one reserved per thread,
acknowledged late). Celery's loop ran it when it next woke, up to a second later
(celery/celery#6941): with the threads pool a run waited one to two seconds for its worker after
the one before it. A byte on a pipe the loop watches wakes it at once.
"""

import os
import threading
import weakref
from contextlib import suppress
from typing import Any

from celery import bootsteps

# Per event loop: the pipe a handing thread writes to and the loop reads from.
_pipes: "weakref.WeakKeyDictionary[Any, tuple[int, int]]" = weakref.WeakKeyDictionary()


def hub_woken_by_other_threads(hub: Any) -> None:
    """Make what another thread hands to `hub` wake it. Called again once the hub was reset
    (its broker connection lost and made again), it watches the same pipe again."""
    if hub not in _pipes:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        _pipes[hub] = (wake_read, wake_write)
        loop_thread = threading.get_ident()
        handed_to_loop = hub.call_soon

        def call_soon(callback: Any, *args: Any) -> Any:
            ready = handed_to_loop(callback, *args)
            if threading.get_ident() != loop_thread:
                with suppress(BlockingIOError):  # full: a wake-up is already on its way
                    os.write(wake_write, b"\0")
            return ready

        hub.call_soon = call_soon
    wake_read = _pipes[hub][0]
    hub.add_reader(wake_read, _drained, wake_read)


def _drained(wake_read: int) -> None:
    with suppress(BlockingIOError):
        os.read(wake_read, 4096)


class HubWokenByPoolThreads(bootsteps.StartStopStep):
    """The worker's consumer step that does it each time its event loop starts."""

    def register_with_event_loop(self, consumer: Any, hub: Any) -> None:
        hub_woken_by_other_threads(hub)
