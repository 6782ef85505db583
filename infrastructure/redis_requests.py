"""Requests and their answers over Redis lists: how a web process asks a worker for something
only a worker may do (it holds the engines' credentials), and waits a few seconds for the answer.

A request is pushed on a list any worker that serves it pops from (BLPOP); its answer goes to a
list of its own that the asker waits on. Nothing outlives its use: a request no worker took in
time is dropped by the worker that finds it late, and an answer nobody waits for expires.
"""

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

# How long an answer nobody read, or a list of requests nobody serves, is kept.
LEFT_FOR_SECONDS = 60

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


class RequestUnanswered(Exception):
    """No worker answered in time (none runs, or all are busy); the message says which list."""


def request_answer(queue: str, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Push `payload` on `queue` and wait at most `timeout` seconds for a worker's answer."""
    client = _client()
    reply = f"{queue}:answer:{uuid.uuid4().hex}"
    deadline = time.time() + timeout
    message = json.dumps({"reply": reply, "deadline": deadline, "payload": payload})
    try:
        pipeline = client.pipeline()
        pipeline.rpush(queue, message)
        pipeline.expire(queue, LEFT_FOR_SECONDS)
        pipeline.execute()
        answered: list[bytes] | None = client.blpop(  # type: ignore[assignment]
            [reply], timeout=max(timeout, 1)
        )
    except redis.RedisError as error:
        raise RequestUnanswered(f"Redis did not take the request ({error})") from None
    if answered is None:
        raise RequestUnanswered(f"no worker answered on {queue} within {timeout:.0f}s")
    answer: dict[str, Any] = json.loads(answered[1])
    return answer


def requests_serve(
    queue: str,
    answer: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    stopping: threading.Event,
    run: Callable[[Callable[[], None]], object],
) -> None:
    """Pop requests from `queue` until `stopping` is set, handing each to `run` (a pool's
    submit), which calls `answer` and sends back what it returns."""
    client = _client()
    while not stopping.is_set():
        try:
            popped: list[bytes] | None = client.blpop([queue], timeout=1)  # type: ignore[assignment]
        except redis.RedisError:
            # Redis restarting: the askers time out meanwhile; try again shortly.
            stopping.wait(1)
            continue
        if popped is None:
            continue
        message = json.loads(popped[1])
        if message["deadline"] < time.time():
            continue  # its asker has given up

        def reply(message: dict[str, Any] = message) -> None:
            outcome = answer(message["payload"])
            pipeline = client.pipeline()
            pipeline.rpush(message["reply"], json.dumps(outcome))
            pipeline.expire(message["reply"], LEFT_FOR_SECONDS)
            pipeline.execute()

        run(reply)


def _client() -> redis.Redis:
    # One connection pool per process: many threads share it.
    with _clients_lock:
        if settings.REDIS_URL not in _clients:
            _clients[settings.REDIS_URL] = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=30, health_check_interval=30
            )
        return _clients[settings.REDIS_URL]
