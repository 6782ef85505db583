"""A worker loads its tasks and what they use, not the web's pages and API: Celery's start-up
system checks would import every view (the REST framework, the OpenAPI schema generator,
django.test), 22 MB a worker never uses (config/celery.py turns them off)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# What `celery -A config worker` loads before it takes its first task.
LOADED_AS_A_WORKER_STARTS = """
import json, sys
from config.celery import app
app.loader.init_worker()
print(json.dumps(sorted(sys.modules)))
"""


def test_a_started_worker_has_its_tasks_and_none_of_the_web_views_or_api() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", LOADED_AS_A_WORKER_STARTS],
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if key != "CELERY_SKIP_CHECKS"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = set(json.loads(answer.stdout.strip().splitlines()[-1]))
    assert {"pipelines.tasks", "releases.tasks", "webhooks.tasks", "docker"} <= loaded
    assert {"api.views", "web.runs", "drf_spectacular.openapi", "django.test"} & loaded == set()
