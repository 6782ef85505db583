"""Only the web process pools its PostgreSQL connections; workers, which fork, never do, even
when a web process (or a test that loaded it) starts them."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import suite_database_url

ROOT = Path(__file__).resolve().parents[2]

POOL_OF_THIS_PROCESS = (
    "from django.conf import settings; import json; "
    "database = settings.DATABASES['default']; "
    "print(json.dumps([database.get('OPTIONS', {}).get('pool'), database['CONN_MAX_AGE']]))"
)


def run_python(code: str) -> list[object]:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": suite_database_url()},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: list[object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer


def test_the_web_process_shares_a_bounded_pool_of_connections() -> None:
    pool, conn_max_age = run_python("import config.asgi; " + POOL_OF_THIS_PROCESS)

    assert isinstance(pool, dict) and pool["max_size"] == 10
    assert conn_max_age == 0


def test_a_worker_keeps_its_own_connection_and_no_pool() -> None:
    setup = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; "
    pool, conn_max_age = run_python(setup + "django.setup(); " + POOL_OF_THIS_PROCESS)

    assert pool is None
    assert conn_max_age == int(os.environ.get("DOCKYARD_DB_CONN_MAX_AGE", "60"))


def test_a_process_started_by_the_web_process_does_not_inherit_its_pool() -> None:
    # What the web process hands down is its environment: a worker started from it (or from a
    # test that loaded config.asgi) forks, and a pool shared across a fork would be corrupted.
    child = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; "
        "django.setup(); " + POOL_OF_THIS_PROCESS
    )
    pool, _ = run_python(
        "import config.asgi, subprocess, sys; "
        f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, "
        "text=True, check=True).stdout)"
    )

    assert pool is None
