"""`make demo`'s last step against a live server and a real worker."""

from collections.abc import Callable
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from pipelines.models import PipelineRun
from releases.models import Environment

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("app_containers_removed"),
]


def test_the_demo_pushes_over_http_and_ends_with_the_image_in_the_registry(
    live_server: object, celery_worker: str, registry_tags: Callable[[str], list[str]]
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
    served = requests.get(staging.frontend_url, timeout=5).text
    assert "Hello from Dockyard" in served
