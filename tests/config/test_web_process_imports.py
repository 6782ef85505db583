"""The web process loads what it serves with: the engine and ssh adapters (the Docker SDK and
paramiko, about 40 MB) are the worker's, and stay out of every web process."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

LOADED = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
import config.asgi
from django.urls import get_resolver
get_resolver().url_patterns
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_a_web_process_with_every_page_and_endpoint_loaded_has_no_docker_sdk_or_paramiko() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", LOADED],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = set(json.loads(answer.stdout.strip().splitlines()[-1]))
    assert "django" in loaded and "rest_framework" in loaded
    assert {"docker", "paramiko"} & loaded == set()
