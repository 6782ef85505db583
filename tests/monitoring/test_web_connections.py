"""Each web process holds a bounded number of database connections, however many requests it
serves at once: Django runs each request in a thread of its own under ASGI, and a
connection kept per thread would outlive the thread until PostgreSQL refuses new clients."""

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.operations.fault_stack import FaultStack

pytestmark = pytest.mark.django_db

CONCURRENT = 32
REQUESTS_EACH = 15
POOL_SIZE = 10  # DOCKYARD_DB_POOL_SIZE's default
WEB_WORKERS = 2  # scripts/web.sh's default: each process has a pool of its own


@pytest.fixture
def web_as_make_up_runs_it(tmp_path: Path) -> Iterator[str]:
    """The web server with the database settings `make up` and docker-compose give it (the suite's
    shared web server closes every connection, which would hide what this test looks for)."""
    stack = FaultStack(tmp_path / "stack", DOCKYARD_DB_CONN_MAX_AGE="60")
    stack.start_redis()
    stack.start_web()
    yield stack.url
    stack.close()


def web_connections() -> int:
    """Connections to the test database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        (count,) = cursor.fetchone()
    return int(count)


def test_many_concurrent_requests_leave_a_bounded_number_of_database_connections(
    web_as_make_up_runs_it: str,
) -> None:
    web_server = web_as_make_up_runs_it
    before = web_connections()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as session:
            for _ in range(REQUESTS_EACH):
                status = session.get(f"{web_server}/healthz", timeout=30).status_code
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=client) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == {200: CONCURRENT * REQUESTS_EACH}
    grew = web_connections() - before
    assert grew <= POOL_SIZE * WEB_WORKERS, (
        f"the web server kept {grew} more database connections open"
    )
