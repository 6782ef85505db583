"""The web server's process: uvicorn, run by gunicorn in processes forked from one that loaded
Dockyard first (scripts/web.sh).

uvicorn's own `--workers` starts each process fresh, so every one loaded Django, DRF, Channels
and Dockyard into memory of its own (about 105 MB a process). gunicorn's `--preload` loads
config.asgi once (it loads every view, URL pattern and template up front and freezes what it
loaded for the garbage collector) and forks the processes from it, which share those pages.
gunicorn also replaces a process that dies.
"""

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class DockyardUvicornWorker(UvicornWorker):
    # uvloop for the event loop. HTTP is parsed by h11, which refuses a request whose head
    # passes 16 kB; httptools parses faster but buffers a head of any size, which a hostile
    # client could use to fill the memory. No proxy headers: a client on this machine could
    # otherwise name any address as its own in X-Forwarded-For, and the audit log records the
    # address a request came from.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "h11",
        "ws": "websockets",
        "h11_max_incomplete_event_size": 16 * 1024,
        "proxy_headers": False,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
