"""The dashboard: searched and filtered, a page at a time, in the same few queries whether it
lists 20 projects or 200."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pipelines.models import PipelineRun, Stage
from pipelines.states import STAGE_ORDER
from projects.models import Project
from releases.models import Environment, Release
from tests.factories import make_project, make_run_in_state

pytestmark = pytest.mark.django_db

# The session, the user, the count, the projects, their latest runs, their environments.
DASHBOARD_QUERIES = 6
RUNS_EACH = 4


@pytest.fixture
def viewer(client: Client) -> User:
    user = User.objects.create_user("viewer")
    client.force_login(user)
    return user


def projects_with_runs_and_environments(count: int, *, first: int = 0) -> list[Project]:
    """`count` projects, each with four runs (the newest failed) and staging and production
    serving a release."""
    projects = [make_project(slug=f"app-{n:03d}") for n in range(first, first + count)]
    runs = PipelineRun.objects.bulk_create(
        PipelineRun(
            project=project,
            number=number,
            ref="refs/heads/main",
            commit_sha=f"{number:x}".rjust(40, "a"),
            commit_message=f"change {number} of {project.slug}",
            trigger="webhook",
            status="failed" if number == RUNS_EACH else "succeeded",
        )
        for project in projects
        for number in range(1, RUNS_EACH + 1)
    )
    Stage.objects.bulk_create(
        Stage(run=run, name=name, position=position, status="succeeded")
        for run in runs
        for position, name in enumerate(STAGE_ORDER)
    )
    releases = Release.objects.bulk_create(
        Release(
            project=run.project,
            number=1,
            run=run,
            commit_sha=run.commit_sha,
            image="x",
            deploy_config={},
        )
        for run in runs
        if run.number == 1
    )
    port = 40000 + 6 * first
    environments = []
    for release in releases:
        for name in ("staging", "production"):
            environments.append(
                Environment(
                    project=release.project,
                    name=name,
                    frontend_port=port,
                    blue_port=port + 1,
                    green_port=port + 2,
                    current_release=release,
                )
            )
            port += 3
    Environment.objects.bulk_create(environments)
    return projects


def dashboard_queries(client: Client, path: str = "/") -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_the_dashboard_of_200_projects_takes_a_bounded_number_of_queries(
    client: Client, viewer: User, django_assert_max_num_queries: Any
) -> None:
    projects_with_runs_and_environments(200)

    with django_assert_max_num_queries(DASHBOARD_QUERIES):
        page = client.get("/").content.decode()

    assert "200 projects." in page
    assert page.count('<tr class="project-') == 50
    # The latest three runs of each project listed, newest first, and its environments.
    assert '<a href="/projects/app-000/runs/4/">#4</a>' in page
    assert '<a href="/projects/app-000/runs/1/">#1</a>' not in page
    assert page.count("/runs/3/") == 50 and page.count("/runs/2/") == 50
    assert page.count("/environments/production/") == 50
    assert "change 4 of app-049" in page and "app-050" not in page


def test_the_dashboard_takes_as_many_queries_for_200_projects_as_for_20(
    client: Client, viewer: User
) -> None:
    projects_with_runs_and_environments(20)
    for_20, _ = dashboard_queries(client)
    projects_with_runs_and_environments(180, first=20)
    for_200, _ = dashboard_queries(client)
    filtered, _ = dashboard_queries(client, "/?q=app&status=failed&page=3")
    assert for_20 == for_200 == filtered <= DASHBOARD_QUERIES


def test_the_dashboard_finds_projects_by_name_and_by_how_their_latest_run_went(
    client: Client, viewer: User
) -> None:
    api, web, worker = (make_project(slug=slug) for slug in ("api", "web", "worker"))
    make_run_in_state(api, status="failed", at_stage="test")
    make_run_in_state(web)
    make_run_in_state(worker, status="failed", at_stage="build")
    make_run_in_state(worker, number=2)

    by_name = client.get("/", {"q": "WEB"}).content.decode()
    assert 'class="project-web"' in by_name and "project-api" not in by_name
    assert "1 project matches." in by_name

    failing = client.get("/", {"status": "failed"}).content.decode()
    # The worker's latest run passed: only its older one failed.
    assert 'class="project-api"' in failing
    assert "project-web" not in failing and "project-worker" not in failing

    none = client.get("/", {"q": "nothing-like-it"}).content.decode()
    assert "No project matches" in none


def test_the_dashboard_pages_through_projects_and_keeps_the_search_while_it_does(
    client: Client, viewer: User
) -> None:
    for n in range(60):
        make_project(slug=f"svc-{n:02d}")
    make_project(slug="other")
    first = client.get("/", {"q": "svc"}).content.decode()
    assert "page 1 of 2" in first and 'href="?q=svc&amp;page=2"' in first
    second = client.get("/", {"q": "svc", "page": "2"}).content.decode()
    assert second.count('<tr class="project-') == 10
    assert "project-other" not in second


def test_an_unknown_status_filter_is_ignored(client: Client, viewer: User) -> None:
    make_project(slug="web")
    page = client.get("/", {"status": "exploded"}).content.decode()
    assert 'class="project-web"' in page
