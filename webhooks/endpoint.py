"""The webhook endpoints' answers, and the lean ASGI app that serves them on the hot path.

Forges need no sessions, CSRF or login. Under ASGI, Django's request handler costs several
milliseconds a request before the view even runs (a thread per request and a hop per
middleware), more than the delivery itself; `webhook_asgi_app` skips all that and makes one hop
to a pooled thread for the delivery's database work. The Django views in webhooks.views give
the same answers (for the test client and WSGI servers); both call `webhook_answer`.
"""

import json
import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.urls import reverse
from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.http import parse_header_parameters

from webhooks.services import GITHUB, GITLAB, ForgeReader, WebhookRejected, delivery_receive

logger = logging.getLogger(__name__)

READERS_BY_PATH = {"/webhooks/github/": GITHUB, "/webhooks/gitlab/": GITLAB}
TOO_LARGE = "body too large: the limit is 25 MB"
# A forge's delivery has a few hundred bytes of headers; the web server lets through up to
# what it reads at once (h11's limit is on a head still arriving).
HEADERS_LIMIT = 16 * 1024
# A body at least this large is not left behind in the database client (see below).
KEPT_BY_THE_CLIENT_BYTES = 2**20


def webhook_answer(
    *, reader: ForgeReader, headers: Mapping[str, str], body: bytes, content_type: str
) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON answer) for one delivery. The database connection that stored a
    large body is closed afterwards, out of the web process's pool too."""
    try:
        outcome = delivery_receive(
            reader=reader, headers=headers, body=body, content_type=content_type
        )
    except WebhookRejected as rejection:
        logger.warning(
            "%s webhook refused (%d): %s", reader.forge, rejection.status, rejection.message
        )
        return rejection.status, {"error": rejection.message}
    finally:
        if len(body) >= KEPT_BY_THE_CLIENT_BYTES:
            _connection_close_dropping_what_it_sent(len(body))
    answer: dict[str, object] = {"message": outcome.message}
    if outcome.run is not None:
        answer["run"] = settings.PUBLIC_URL + reverse("run-detail", args=[outcome.run.pk])
    return outcome.status, answer


def _connection_close_dropping_what_it_sent(body_bytes: int) -> None:
    # The database client keeps what the delivery sent for as long as the connection lives:
    # libpq its output buffer, grown to the largest message and never shrunk; SQLite the
    # statement with the body still bound to it. A pooled connection lives for an hour, so a
    # 25 MB body stayed in the web process as long. Closed here, the pool replaces it (and
    # says it discarded a closed connection).
    if connection.in_atomic_block or connection.connection is None:
        return  # the caller's transaction goes on; it ends that connection's use
    logger.info("closing the database connection that stored a %d-byte webhook body", body_bytes)
    connection.connection.close()
    connection.close()


async def webhook_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST /webhooks/github/ and /webhooks/gitlab/ as a bare ASGI application."""
    reader = READERS_BY_PATH.get(scope["path"])
    if reader is None:
        await _respond(send, 404, {"error": f"no webhook endpoint at {scope['path']}"})
        return
    if scope["method"] != "POST":
        await _respond(send, 405, {"error": "webhooks are delivered with POST"})
        return
    if sum(len(name) + len(value) for name, value in scope["headers"]) > HEADERS_LIMIT:
        await _respond(send, 431, {"error": "headers too large: the limit is 16 kB"})
        return
    headers = _headers(scope)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    declared = headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        await _respond(send, 413, {"error": TOO_LARGE})
        return
    # The parts as they come, joined once: a growing buffer would be copied at each growth,
    # and copied once more into bytes, three copies of a 25 MB body at the peak.
    parts: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        part = message.get("body", b"")
        parts.append(part)
        received += len(part)
        if received > limit:
            await _respond(send, 413, {"error": TOO_LARGE})
            return
        if not message.get("more_body"):
            break
    # Handed to the thread in a list it empties: the thread pool's work item and asgiref's call
    # keep their arguments until the thread next holds the interpreter lock, which may be after
    # the answer has left, and a 25 MB body outlived its request that long. Emptied, the body
    # goes when the thread is done with it, before the answer.
    handed_over = [b"".join(parts)]
    del parts
    content_type, _ = parse_header_parameters(headers.get("Content-Type", ""))
    # SQLite (the default database) takes one writer at a time, and concurrent writers would
    # only wait on each other in its coarse busy loop: one thread does all of this process's
    # webhook database work. PostgreSQL takes them side by side, each thread with a connection
    # from the web process's pool.
    single_writer = connection.vendor == "sqlite"
    status, answer = await sync_to_async(_answer_in_thread, thread_sensitive=single_writer)(
        reader, headers, handed_over, content_type
    )
    await _respond(send, status, answer)


def _answer_in_thread(
    reader: ForgeReader, headers: Mapping[str, str], handed_over: list[bytes], content_type: str
) -> tuple[int, dict[str, object]]:
    body = handed_over.pop()
    # What Django's request_started/request_finished signals do for its own requests.
    close_old_connections()
    try:
        return webhook_answer(reader=reader, headers=headers, body=body, content_type=content_type)
    finally:
        close_old_connections()


def _headers(scope: dict[str, Any]) -> CaseInsensitiveMapping[str]:
    merged: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return CaseInsensitiveMapping(merged)


async def _respond(send: Any, status: int, answer: dict[str, object]) -> None:
    body = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
