"""The project page's image graph: the upstream moves that rebuilt the project, and their wave."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds.models import UpstreamMove
from pipelines.models import PipelineRun
from projects.models import Project
from tests.factories import make_project, make_run_in_state

pytestmark = pytest.mark.django_db

OLD = "sha256:" + "a1" * 32
NEW = "sha256:" + "b2" * 32


@pytest.fixture
def viewer(client: Client) -> User:
    user = User.objects.create_user("viewer")
    client.force_login(user)
    return user


def upstream_move(
    reference: str, runs: list[PipelineRun], *, hours_ago: float, old: str = OLD, new: str = NEW
) -> UpstreamMove:
    move = UpstreamMove.objects.create(reference=reference, old_digest=old, new_digest=new)
    move.runs.set(runs)
    # detected_at is set on creation: move it back to when the watch found this one.
    UpstreamMove.objects.filter(pk=move.pk).update(
        detected_at=timezone.now() - timedelta(hours=hours_ago)
    )
    return move


def wave_section(client: Client, slug: str) -> str:
    page = client.get(f"/projects/{slug}/").content.decode()
    found = re.search(r'<section id="upstream-waves"[^>]*>(.*?)</section>', page, re.S)
    return found[1] if found else ""


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


@pytest.fixture
def wave() -> dict[str, Project]:
    """debian:12 moved: it rebuilt base and api; base's rebuild then rebuilt web, which builds
    on base. Earlier, alpine moved under api alone; python moved under docs alone."""
    projects = {slug: make_project(slug=slug) for slug in ("base", "api", "web", "docs")}
    base_run = make_run_in_state(projects["base"], number=4, trigger="upstream-moved")
    api_run = make_run_in_state(
        projects["api"], number=7, trigger="upstream-moved", status="failed", at_stage="test"
    )
    make_run_in_state(
        projects["web"],
        number=9,
        status="running",
        at_stage="build",
        trigger="base-updated",
        triggered_by=base_run,
    )
    upstream_move("debian:12", [base_run, api_run], hours_ago=1)
    upstream_move(
        "alpine:3.20",
        [make_run_in_state(projects["api"], number=6, trigger="upstream-moved")],
        hours_ago=30,
        old="sha256:" + "c3" * 32,
        new="sha256:" + "d4" * 32,
    )
    upstream_move(
        "python:3.12",
        [make_run_in_state(projects["docs"], number=2, trigger="upstream-moved")],
        hours_ago=2,
    )
    return projects


def test_the_graph_shows_the_move_that_rebuilt_a_project_through_its_base(
    client: Client, viewer: User, wave: dict[str, Project]
) -> None:
    section = wave_section(client, "web")

    moves = section.split('<li class="wave" id="upstream-move-')[1:]
    assert len(moves) == 1, "only the move that rebuilt web"
    move = text_of(moves[0].split(">", 1)[1])
    assert move.startswith("debian:12 sha256:a1a1a1a1a1a1 → sha256:b2b2b2b2b2b2")
    # The whole digests are a hover away.
    assert f'<code title="{OLD}">sha256:a1a1a1a1a1a1</code>' in section
    assert f'<code title="{NEW}">sha256:b2b2b2b2b2b2</code>' in section
    assert "<time datetime=" in moves[0]
    # The runs it started, by project, each linked with its status; web's rebuild under base's.
    runs = re.findall(
        r'<a href="(/projects/[\w-]+/runs/\d+/)">([\w-]+ #\d+)</a>\s*'
        r'<span class="status status-(\w+)">',
        moves[0],
    )
    assert runs == [
        ("/projects/api/runs/7/", "api #7", "failed"),
        ("/projects/base/runs/4/", "base #4", "succeeded"),
        ("/projects/web/runs/9/", "web #9", "running"),
    ]
    rebuilds = re.search(r'<ul class="wave-rebuilds"[^>]*>(.*?)</ul>', moves[0], re.S)[1]
    assert "web #9" in rebuilds and 'class="wave-run wave-run-here"' in rebuilds
    assert "alpine" not in section and "python" not in section


def test_a_project_rebuilt_by_several_moves_shows_the_newest_first(
    client: Client, viewer: User, wave: dict[str, Project]
) -> None:
    section = wave_section(client, "api")
    references = re.findall(r'<code class="wave-reference">([^<]+)</code>', section)
    assert references == ["debian:12", "alpine:3.20"]
    assert 'href="/projects/api/runs/6/">api #6</a>' in section
    # The project's own run stands out among the others the move started.
    assert re.search(
        r'<li class="wave-run wave-run-here">\s*<a href="/projects/api/runs/7/">', section
    )


def test_a_project_no_move_touched_has_no_waves(
    client: Client, viewer: User, wave: dict[str, Project]
) -> None:
    make_project(slug="quiet")
    assert wave_section(client, "quiet") == ""


def test_the_waves_take_as_many_queries_for_ten_moves_as_for_one(
    client: Client, viewer: User, wave: dict[str, Project], django_assert_max_num_queries: Any
) -> None:
    with CaptureQueriesContext(connection) as one_move:
        client.get("/projects/web/")
    base, web = wave["base"], wave["web"]
    for n in range(10):
        base_run = make_run_in_state(base, number=100 + n, trigger="upstream-moved")
        make_run_in_state(
            web, number=100 + n, trigger="base-updated", triggered_by=base_run, status="failed"
        )
        other = make_project(slug=f"other-{n}")
        upstream_move(
            f"registry.example.com/infra/os:{n}",
            [base_run, make_run_in_state(other, number=1, trigger="upstream-moved")],
            hours_ago=0.5 + n / 100,
        )

    with django_assert_max_num_queries(len(one_move)):
        section = wave_section(client, "web")

    # The five newest moves, each with its rebuild of web.
    assert re.findall(r'<code class="wave-reference">([^<]+)</code>', section) == [
        f"registry.example.com/infra/os:{n}" for n in range(5)
    ]
    assert section.count("wave-run wave-run-here") == 5
