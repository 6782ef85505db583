"""The broker, as the reaper needs to see it: which task messages does it still hold?

Celery's Redis transport keeps waiting messages in one list per queue (plus one per priority
step, `<queue>\\x06\\x16<n>`) and the messages a worker has taken but not acknowledged in the
`unacked` hash. Our Redis keeps nothing on disk, so a restart loses both: a task whose id is
in neither was lost and must be sent again.
"""

import json
from collections.abc import Iterable

import redis
from django.conf import settings

UNACKED_KEY = "unacked"
PRIORITY_SEPARATOR = "\x06\x16"


class BrokerError(Exception):
    """The broker could not be read; nobody can tell which messages it lost."""


def held_task_ids(queues: Iterable[str]) -> set[str]:
    """The ids of every task message waiting in `queues` or taken but unacknowledged."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    try:
        ids: set[str] = set()
        for queue in queues:
            for key in [queue, *client.scan_iter(match=f"{queue}{PRIORITY_SEPARATOR}*")]:
                waiting: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
                for raw in waiting:
                    ids.update(_task_id(raw))
        taken: list[bytes] = client.hvals(UNACKED_KEY)  # type: ignore[assignment]
        for raw in taken:
            # [message, exchange, routing key]
            ids.update(_task_id(json.dumps(json.loads(raw)[0])))
        return ids
    except (redis.RedisError, ValueError, IndexError, TypeError) as error:
        raise BrokerError(f"could not read the broker's queues: {error}") from None
    finally:
        client.close()


def _task_id(raw: bytes | str) -> set[str]:
    message = json.loads(raw)
    task_id = (message.get("headers") or {}).get("id") or (message.get("properties") or {}).get(
        "correlation_id"
    )
    return {task_id} if task_id else set()
