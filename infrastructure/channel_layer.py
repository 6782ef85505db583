"""The channel layer adapter: hand a browser-bound event to a Channels group (Redis).

`group_publish` is the one place that talks to the channel layer from sync code. The database
holds everything a browser needs; a lost live message only means a browser catches up on its
next reconnect, so a failure here is logged, never raised into a build or a deployment.
"""

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
PUBLISH_TIMEOUT_SECONDS = 5.0

_loops: dict[int, asyncio.AbstractEventLoop] = {}
_loops_lock = threading.Lock()


def group_publish(group: str, event: dict[str, Any]) -> None:
    """Send `event` to every consumer in `group` (consumers get it as a "run.event" message)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "run.event", "event": event}
    try:
        sent = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _publish_loop())
        sent.result(timeout=PUBLISH_TIMEOUT_SECONDS)
    except Exception:
        logger.warning("could not publish a live update to %s", group, exc_info=True)


def _publish_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for publishing, running on a daemon thread of its own.

    The channel layer keeps its Redis connections per event loop. async_to_sync makes a new
    loop for every call from plain sync code (a worker), so each event connected and logged in
    to Redis again: about 10 ms, several times per stage. One long-lived loop keeps one
    connection; waiting for each send keeps the events in order. A forked child (the worker's
    pool) starts its own: the parent's thread does not exist in it.
    """
    pid = os.getpid()
    loop = _loops.get(pid)
    if loop is not None:
        return loop
    with _loops_lock:
        loop = _loops.get(pid)
        if loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="channel-layer-publish", daemon=True
            )
            thread.start()
            _loops.clear()
            _loops[pid] = loop
    return loop


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at the fork would never be released here.
    global _loops_lock
    _loops_lock = threading.Lock()
    _loops.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
