"""The channel layer adapter: hand a browser-bound event to a Channels group (Redis).

`group_publish` is the one place that talks to the channel layer from sync code. The database
holds everything a browser needs; a lost live message only means a browser catches up on its
next reconnect, so a failure here is logged, never raised into a build or a deployment, and
nothing waits for a send: events go out in order from a thread of their own.
"""

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
SEND_TIMEOUT_SECONDS = 5.0
# Events waiting to be sent, at most: with Redis away for long, the oldest news is dropped
# rather than memory filled.
MAX_WAITING = 10_000


@dataclass(frozen=True)
class _Publisher:
    loop: asyncio.AbstractEventLoop
    waiting: "asyncio.Queue[tuple[str, dict[str, Any]]]"
    # Held so that the loop's sender is never garbage-collected while it waits.
    sender: "asyncio.Task[None]"


_publishers: dict[int, _Publisher] = {}
_publishers_lock = threading.Lock()


def group_publish(group: str, event: dict[str, Any]) -> None:
    """Send `event` to every consumer in `group` (consumers get it as a "run.event" message),
    after the events published before it; returns at once."""
    if get_channel_layer() is None:
        return
    publisher = _publisher()
    message = {"type": "run.event", "event": event}
    publisher.loop.call_soon_threadsafe(_wait_in_line, publisher.waiting, group, message)


def _wait_in_line(
    waiting: "asyncio.Queue[tuple[str, dict[str, Any]]]", group: str, message: dict[str, Any]
) -> None:
    if waiting.full():
        waiting.get_nowait()
        logger.warning("live updates are not getting through; dropped the oldest waiting one")
    waiting.put_nowait((group, message))


async def _send_in_order(waiting: "asyncio.Queue[tuple[str, dict[str, Any]]]") -> None:
    layer = get_channel_layer()
    while True:
        group, message = await waiting.get()
        try:
            await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT_SECONDS)
        except Exception:
            logger.warning("could not publish a live update to %s", group, exc_info=True)


def _publisher() -> _Publisher:
    """This process's publisher: an event loop on a daemon thread of its own, sending.

    The channel layer keeps its Redis connections per event loop. async_to_sync makes a new
    loop for every call from plain sync code (a worker), so each event connected and logged in
    to Redis again, several times per stage, while the stage waited. One long-lived loop keeps
    one connection. A forked child (the worker's pool) starts its own: the parent's thread does
    not exist in it.
    """
    pid = os.getpid()
    publisher = _publishers.get(pid)
    if publisher is not None:
        return publisher
    with _publishers_lock:
        publisher = _publishers.get(pid)
        if publisher is None:
            loop = asyncio.new_event_loop()
            waiting: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_WAITING)
            sender = loop.create_task(_send_in_order(waiting))
            thread = threading.Thread(
                target=loop.run_forever, name="channel-layer-publish", daemon=True
            )
            thread.start()
            publisher = _Publisher(loop=loop, waiting=waiting, sender=sender)
            _publishers.clear()
            _publishers[pid] = publisher
    return publisher


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at the fork would never be released here.
    global _publishers_lock
    _publishers_lock = threading.Lock()
    _publishers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
