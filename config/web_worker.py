"""The web server's process: uvicorn, run by gunicorn in processes forked from one that loaded
Dockyard first (scripts/web.sh).

uvicorn's own `--workers` starts each process fresh, so every one loaded Django, DRF, Channels
and Dockyard into memory of its own (about 105 MB a process). gunicorn's `--preload` loads
config.asgi once (it loads every view, URL pattern and template up front and freezes what it
loaded for the garbage collector) and forks the processes from it, which share those pages.
gunicorn also replaces a process that dies.
"""

import ctypes
import threading
import time
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

# glibc's malloc_trim, or None under another C library.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)
HEAP_TRIM_EVERY_SECONDS = 30.0


def heap_trim() -> bool:
    """Give the C heap's free pages back to the system; False where glibc is not the C library.

    Whatever a request allocated above Python's small-object size (bodies, large strings,
    dicts and lists) comes from glibc's heap, which shrinks only from its top: what is freed
    below a chunk still in use stays resident. After bench/soak.py's rough day each web
    process held 15-20 MB of such free pages (malloc_trim gave them back).
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def _heap_trimmed_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        heap_trim()


class DockyardUvicornWorker(UvicornWorker):
    # uvloop for the event loop. HTTP is parsed by h11, which refuses a request whose head
    # passes 16 kB; httptools buffers a head of any size, which a hostile client could use to
    # fill the memory (and served this server's health check no faster here). No proxy
    # headers: a client on this machine could otherwise name any address as its own in
    # X-Forwarded-For, and the audit log records the address a request came from.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "h11",
        "ws": "websockets",
        "h11_max_incomplete_event_size": 16 * 1024,
        "proxy_headers": False,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }

    def init_process(self) -> None:
        # In the forked process, before it serves: a thread of the parent would not be here.
        threading.Thread(
            target=_heap_trimmed_every,
            args=(HEAP_TRIM_EVERY_SECONDS,),
            name="heap-trim",
            daemon=True,
        ).start()
        super().init_process()
