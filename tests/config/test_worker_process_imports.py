"""A worker loads its tasks and what they use, not the web's API: Celery's start-up
system checks (config/celery.py turns them off) and its first link to a page (its URLconf is
the pages' own, operations/worker_signals.py) would import every view, the API's with the OpenAPI
schema generator and django.test, about 20 MB a worker never uses."""

import os

from django.urls import URLResolver, get_resolver, reverse

import web.urls
from operations.worker_signals import WORKER_URLCONF
from tests.fresh_interpreter import printed_json

# What `celery -A config worker` loads before its first task, and what a notification's link
# loads then.
LOADED_BY_A_WORKER_THAT_LINKED_TO_A_RUN = """
import json, sys
from celery.signals import worker_init
from config.celery import app
app.loader.init_worker()
worker_init.send(sender=None)
from django.urls import reverse
link = reverse("run-detail", args=[7])
print(json.dumps({"link": link, "modules": sorted(sys.modules)}))
"""


def test_a_worker_that_linked_to_a_run_has_its_tasks_and_none_of_the_api() -> None:
    loaded = printed_json(
        LOADED_BY_A_WORKER_THAT_LINKED_TO_A_RUN,
        env={key: value for key, value in os.environ.items() if key != "CELERY_SKIP_CHECKS"},
    )
    modules = set(loaded["modules"])
    assert loaded["link"] == "/runs/7/"
    assert {"pipelines.tasks", "releases.tasks", "webhooks.tasks", "docker"} <= modules
    assert {"api.urls", "api.views", "drf_spectacular.openapi", "django.test"} & modules == set()


def test_the_worker_links_to_pages_at_the_paths_the_web_serves_them_on() -> None:
    mounted = [
        str(pattern.pattern)
        for pattern in get_resolver("config.urls").url_patterns
        if isinstance(pattern, URLResolver) and pattern.urlconf_module is web.urls
    ]
    assert mounted == [""]
    for name, args in [
        ("run-detail", [7]),
        ("run", ["shop", 3]),
        ("environment-detail", ["shop", "staging"]),
    ]:
        assert reverse(name, args=args, urlconf=WORKER_URLCONF) == reverse(name, args=args)
