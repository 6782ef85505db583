"""Locks the whole installation shares: what must run on one worker at a time, whichever.

PostgreSQL advisory locks, held by the database session: a worker that dies, or loses its
connection, lets go at once, with no lease to expire. Taken without waiting: a worker that does
not get the lock knows another is doing the job, and skips it. With SQLite (one host, one
worker) every lock is granted.
"""

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def lock_key(name: str) -> int:
    """A lock's name as PostgreSQL's advisory lock key (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha256(f"dockyard:{name}".encode()).digest()[:8], signed=True)


@contextmanager
def cluster_lock(name: str) -> Iterator[bool]:
    """Hold the lock `name` for the block if no other session holds it; yields whether this
    one does (False: another worker is at it; do not do the work)."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = lock_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        # The block may have closed the connection (an error mid-chore): closing let the lock
        # go already, and a new connection holds nothing to unlock.
        if held and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


class ClusterLockTimeout(Exception):
    """Another worker held the lock for longer than the caller would wait."""


@contextmanager
def cluster_lock_waited(name: str, *, seconds: float) -> Iterator[None]:
    """Hold the lock `name` for the block, waiting up to `seconds` for another holder to let
    go; ClusterLockTimeout after that."""
    deadline = time.monotonic() + seconds
    while True:
        with cluster_lock(name) as held:
            if held:
                yield
                return
        if time.monotonic() > deadline:
            raise ClusterLockTimeout(f"{name!r} stayed locked by another worker for {seconds:g}s")
        time.sleep(0.05)
