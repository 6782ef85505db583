"""The web process loads what it serves with: the engine and ssh adapters (the Docker SDK and
paramiko, about 40 MB) are the worker's, and stay out of every web process."""

from tests.fresh_interpreter import printed_json

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
    loaded = set(printed_json(LOADED))
    assert "django" in loaded and "rest_framework" in loaded
    assert {"docker", "paramiko"} & loaded == set()
