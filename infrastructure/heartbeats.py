"""Heartbeats: a worker carrying a stage or a deployment says so every few seconds.

A heartbeat that stops means the process is gone (killed, its machine down): the reaper
(operations.reaper) then settles the work. It says nothing about progress; stuck work is
stopped by its own timeouts (test timeout, health-check timeout).
"""

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Model
from django.utils import timezone

logger = logging.getLogger(__name__)


# The Celery worker's node name (dockyard@build-2), once the worker has said it: with several
# workers on a host, or hosts of one name, the host name alone does not say which.
_worker_node: list[str] = []


def worker_node_name_set(name: str) -> None:
    """Note this process's Celery node name (before the pool forks: its children inherit it)."""
    _worker_node[:] = [name]


def worker_name() -> str:
    """Which process carries the work, for the timeline and the operator: node:pid."""
    node = _worker_node[0] if _worker_node else socket.gethostname()
    return f"{node}:{os.getpid()}"


def heartbeat_is_fresh(at: datetime | None, *, now: datetime | None = None) -> bool:
    if at is None:
        return False
    return (now or timezone.now()) - at < timedelta(seconds=settings.DOCKYARD_LOST_AFTER_SECONDS)


@contextmanager
def heartbeat(model: type[Model], pk: int) -> Iterator[None]:
    """Refresh `model` row `pk`'s heartbeat_at from a side thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.DOCKYARD_HEARTBEAT_SECONDS):
                try:
                    model._default_manager.filter(pk=pk).update(heartbeat_at=timezone.now())
                except DatabaseError as error:
                    # A database blip: the next beat tries again on a fresh connection. Only
                    # a silence longer than LOST_AFTER makes the reaper step in.
                    logger.warning("heartbeat of %s %s failed: %s", model.__name__, pk, error)
                    connection.close()
        finally:
            # The thread's own connection (Django keeps one per thread).
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
