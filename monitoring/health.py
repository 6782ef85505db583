"""Can this Dockyard work: does its database answer, its Redis, and any of its workers?

Kept fast for the web checks: load balancers and `make up` poll /healthz, so each check has a
one-second ceiling and Redis is reached through one long-lived connection pool.
"""

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from kombu.exceptions import OperationalError

from config.celery import app as celery_app

CHECK_TIMEOUT_SECONDS = 1.0
WORKER_PING_TIMEOUT_SECONDS = 1.0

_redis_clients: dict[str, redis.Redis] = {}


class BrokerUnreachable(Exception):
    """The broker did not answer, so no worker could be asked."""


def database_problem() -> str:
    """Why the database cannot be used, or "" when it answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        # A pooled connection that cannot be had says only how long it waited: name the
        # database it waited for.
        return f"database {connection.settings_dict['NAME']}: {error}"
    return ""


def redis_problem(url: str | None = None) -> str:
    """Why Redis (the broker and the channel layer) cannot be used, or "" when it answers."""
    try:
        _redis(url or settings.REDIS_URL).ping()
    except (redis.RedisError, OSError) as error:
        return f"redis: {error}"
    return ""


def web_problems() -> dict[str, str]:
    """What the web process depends on and cannot reach: {"redis": "redis: Error 111 ..."}."""
    problems = {"database": database_problem(), "redis": redis_problem()}
    return {name: problem for name, problem in problems.items() if problem}


def workers_answering(
    *, timeout: float = WORKER_PING_TIMEOUT_SECONDS, destination: list[str] | None = None
) -> list[str]:
    """The names of the Celery workers (of `destination`, or all) that answered a ping in time.

    Raises BrokerUnreachable at once when the broker does not answer: Celery itself would
    retry the connection for seconds before giving up.
    """
    problem = redis_problem(celery_app.conf.broker_url)
    if problem:
        raise BrokerUnreachable(problem)
    try:
        replies = celery_app.control.ping(timeout=timeout, destination=destination)
    except (OperationalError, OSError) as error:
        raise BrokerUnreachable(f"broker: {error}") from None
    return sorted(name for reply in replies for name in reply)


def _redis(url: str) -> redis.Redis:
    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url,
            socket_timeout=CHECK_TIMEOUT_SECONDS,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        )
        _redis_clients[url] = client
    return client
