"""`make demo`'s last step against a live server and a real worker."""

import re
import threading
from collections.abc import Callable, Iterator
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from pipelines.models import PipelineRun
from releases.models import Environment
from releases.tools import deploy_tools
from releases.traffic import traffic_pass

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]


@pytest.fixture
def collector() -> Iterator[None]:
    """What a deploy worker's housekeeper does (the test worker keeps no house): read the
    hosts' request logs every second."""
    stopping = threading.Event()

    def collect() -> None:
        from django.db import connection

        try:
            while not stopping.wait(1):
                traffic_pass(deploy_tools())
        finally:
            connection.close()

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    yield
    stopping.set()
    thread.join(timeout=30)


def test_the_demo_pushes_over_http_and_ends_with_the_image_in_the_registry(
    live_server: object,
    celery_worker: str,
    registry_tags: Callable[[str], list[str]],
    collector: None,
) -> None:
    out = StringIO()
    call_command("demo", server=live_server.url, stdout=out)

    run = PipelineRun.objects.get(project__slug="demo-app")
    assert run.status == "succeeded"
    assert run.commit_sha in registry_tags("demo-app")
    printed = out.getvalue()
    assert "ok: the index page greets its visitors" in printed
    assert f"image:    {run.image_reference}" in printed
    staging = Environment.objects.get(project__slug="demo-app", name="staging")
    assert f"staging:  release 1 serves {staging.frontend_url}" in printed
    # The demo's 20 requests, and its own look at the page before them.
    assert re.search(r"metrics:  2[01] requests to release 1, 0 answered 5xx, p50 ", printed)
    served = requests.get(staging.frontend_url, timeout=5).text
    assert "Hello from Dockyard" in served
