"""Two projects making environments at once never share a port, and a passed run whose release
was never made (its hand-over lost) gets it made: nothing a push earned is lost."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from operations import reaper
from pipelines.models import PipelineRun
from projects.models import Project
from projects.spec import DeploySpec, EnvironmentSpec
from releases import services
from releases.models import Environment
from tests.factories import make_project

DEPLOY = DeploySpec(
    port=8000,
    health="/",
    environments=(EnvironmentSpec(name="staging", auto=True, branches=("main",), after=None),),
)


@pytest.mark.django_db(transaction=True)
def test_two_projects_that_pick_the_same_ports_at_once_end_with_different_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    projects = [make_project(), make_project()]
    real_free_ports = services._free_ports
    first_pick = real_free_ports()
    picks: list[tuple[int, int, int]] = []

    def both_pick_the_same_first(**_: Any) -> tuple[int, int, int]:
        # Both see the same free ports (neither has committed): the race, made certain.
        pick = first_pick if len(picks) < 2 else real_free_ports()
        picks.append(pick)
        return pick

    monkeypatch.setattr(services, "_free_ports", both_pick_the_same_first)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sync(project: Project) -> None:
        try:
            barrier.wait()
            services.environments_sync(project=project, deploy=DEPLOY)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sync, args=(project,)) for project in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ports = list(Environment.objects.values_list("frontend_port", "blue_port", "green_port"))
    assert len(ports) == 2 and len({port for triple in ports for port in triple}) == 6
    assert len(picks) == 3  # the loser picked again


@pytest.mark.django_db
def test_a_passed_run_whose_release_was_never_made_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(reaper, "queue_release_from_run", lambda *, run_id: sent.append(run_id))
    project = make_project()
    ended = timezone.now() - timedelta(minutes=5)
    lost = PipelineRun.objects.create(
        project=project,
        number=1,
        ref="refs/heads/main",
        commit_sha="a" * 40,
        trigger="push",
        status="succeeded",
        image_repository=f"127.0.0.1:5000/{project.slug}",
        image_digest="sha256:" + "b" * 64,
        spec={"deploy": {"port": 8000}},
        finished_at=ended,
    )
    PipelineRun.objects.create(  # nothing to deploy: no release is owed
        project=project,
        number=2,
        ref="refs/heads/main",
        commit_sha="c" * 40,
        trigger="push",
        status="succeeded",
        image_digest="sha256:" + "d" * 64,
        spec={},
        finished_at=ended,
    )

    report = reaper.lost_runs_reap(held=set())

    assert report.releases_resent == [lost.pk]
    assert sent == [lost.pk]
