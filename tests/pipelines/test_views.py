import pytest
from django.contrib.auth.models import User
from django.test import Client

from pipelines.services import run_create
from pipelines.stage_log import StageLog
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def test_the_runs_page_needs_a_login(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_runs_page_lists_runs_with_their_stages(client: Client) -> None:
    client.force_login(User.objects.create_user("ada"))
    project = make_project(slug="web", test_command="sh test.sh")
    run_create(project=project, ref="refs/heads/main", commit_sha="c" * 40, trigger="webhook")
    page = client.get("/").content.decode()
    assert "web #1" in page
    assert "refs/heads/main" in page
    for stage in ("checkout", "build", "test", "publish"):
        assert f"{stage}: pending" in page


def test_a_run_page_shows_each_stage_log(client: Client) -> None:
    client.force_login(User.objects.create_user("ada"))
    run = run_create(
        project=make_project(slug="web"),
        ref="refs/heads/main",
        commit_sha="c" * 40,
        trigger="webhook",
    )
    log = StageLog(run.stages.get(name="checkout"))
    log.line("checked out <cccc> ok")
    log.close()
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "checked out &lt;cccc&gt; ok" in page
