"""Real test suites through the real worker and engine: services next to the test in a
namespace of their own, several steps, JUnit reports, a cache between runs."""

import socket
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from api.tokens import api_token_issue
from builds.models import CacheVolume
from pipelines.models import PipelineRun, TestCase, TestStep
from pipelines.selectors import stage_log_text
from pipelines.states import RunStatus
from tests.factories import GitRepo, busybox_app_repo, make_project
from tests.service_images import POSTGRES_COMMAND, REDIS_COMMAND, infra_image_ensure

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

REPORT = """<?xml version="1.0"?>
<testsuite name="unit" tests="3" failures="1">
<testcase classname="tests.test_cart" name="test_adds_items" time="0.01"/>
<testcase classname="tests.test_cart" name="test_totals" time="1.5">
  <failure message="expected 30, got 31">cart.total() == 31</failure>
</testcase>
<testcase classname="tests.test_cart" name="test_empties" time="0.2"/>
</testsuite>
"""
BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<testsuite><testcase name="&lol2;"/></testsuite>
"""


@pytest.fixture(scope="module")
def infra_image(docker_client: docker.DockerClient) -> str:
    return infra_image_ensure(docker_client)


def run_containers(client: docker.DockerClient, run: PipelineRun) -> list[object]:
    return client.containers.list(
        all=True, sparse=True, filters={"label": f"dockyard.run={run.pk}"}
    )


def test_a_test_talks_to_postgresql_and_redis_next_to_it_and_reaches_nothing_else(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
    infra_image: str,
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("Dockerfile", f"FROM {infra_image}\nCOPY test.sh /test.sh\n")
    repo.write(
        "test.sh",
        textwrap.dedent(
            """\
            set -e
            psql -h db -U postgres -qc "create table t (x int); insert into t values (42)"
            psql -h db -U postgres -tAc "select x from t"
            redis-cli -h cache set greeting hello >/dev/null; redis-cli -h cache get greeting
            grep -E "^127.0.0.1\\s+db$" /etc/hosts
            for port in 8000 5000 6380 5432; do
              if timeout 3 bash -c "</dev/tcp/127.0.0.1/$port" 2>/dev/null
              then echo "$port: reached"; else echo "$port: refused"; fi
            done
            """
        ),
    )
    postgres = ", ".join(f'"{word}"' for word in POSTGRES_COMMAND)
    redis = ", ".join(f'"{word}"' for word in REDIS_COMMAND)
    repo.write(
        "dockyard.yml",
        f"""\
images:
  app: {{}}
services:
  db:
    image: {infra_image}
    command: [{postgres}]
    user: postgres
    ready: ["pg_isready", "-h", "127.0.0.1"]
  cache:
    image: {infra_image}
    command: [{redis}]
    user: redis
    ready: ["redis-cli", "ping"]
test:
  command: ["bash", "/test.sh"]
""",
    )
    project = make_project(repository_url=repo.url)
    # The UI as a browser finds it, on the host's loopback: out of the namespace's reach.
    with listening_on(8000):
        run = pushed_run(project, repo.commit("a suite with a database"))

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    log = stage_log_text(run.stages.get(name="test"))
    assert "\n42\n" in log and "\nhello\n" in log
    assert "5432: reached" in log  # its own database, in its own namespace
    for port in (8000, 5000, 6380):  # the UI, the registry, the broker: on the host only
        assert f"{port}: refused" in log
    assert "service db: ready" in log and "service cache: ready" in log
    assert run_containers(docker_client, run) == []


def test_a_service_that_never_gets_ready_fails_the_run_with_its_last_lines(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    repo.write(
        "dockyard.yml",
        """\
images:
  app: {}
services:
  db:
    image: app
    command: ["sh", "-c", "echo 'starting, but never ready'; sleep 300"]
    ready: ["false"]
    ready_timeout: 2
test:
  command: ["sh", "/app/test.sh"]
""",
    )
    project = make_project(repository_url=repo.url)

    run = pushed_run(project, repo.commit("a service that hangs"))

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "test"
    assert run.failure_reason.startswith(
        "service db never became ready: `false` did not succeed within 2s; its last lines:"
    )
    assert "starting, but never ready" in run.failure_reason
    assert run_containers(docker_client, run) == []


def steps_repo(path: Path) -> GitRepo:
    repo = busybox_app_repo(path)
    repo.write(
        "app/unit.sh",
        f"mkdir -p reports\ncat > reports/unit.xml <<'EOF'\n{REPORT}EOF\n"
        f"cat > reports/bomb.xml <<'EOF'\n{BOMB}EOF\necho unit ran\nexit 1\n",
    )
    repo.write(
        "dockyard.yml",
        """\
images:
  app: {}
test:
  reports: ["reports/*.xml"]
  steps:
    - name: lint
      command: ["sh", "-c", "echo lint ran"]
    - name: unit
      command: ["sh", "/app/unit.sh"]
    - name: integration
      command: ["sh", "-c", "echo integration ran"]
""",
    )
    return repo


def test_three_steps_with_the_second_failing_fail_the_run_naming_it_and_list_its_failures(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = steps_repo(tmp_path / "repo")
    project = make_project(repository_url=repo.url)

    run = pushed_run(project, repo.commit("three steps"))

    assert run.status == RunStatus.FAILED
    assert (run.failed_stage, run.failure_reason) == ("test", "step unit exited with status 1")
    steps = {step.name: step for step in TestStep.objects.filter(run=run)}
    assert {name: step.status for name, step in steps.items()} == {
        "lint": "succeeded",
        "unit": "failed",
    }
    assert steps["unit"].exit_code == 1 and steps["unit"].duration_seconds is not None
    # Each step writes a section of its own in the test stage's log.
    sections = set(run.log_chunks.filter(stage__name="test").values_list("section", flat=True))
    assert {"lint", "unit"} <= sections and "integration" not in sections
    log = stage_log_text(run.stages.get(name="test"))
    assert "integration ran" not in log
    # The report's cases are kept; the bomb beside it was refused without harm.
    cases = {case.name: case for case in TestCase.objects.filter(run=run)}
    assert {name: case.status for name, case in cases.items()} == {
        "test_adds_items": "passed",
        "test_totals": "failed",
        "test_empties": "passed",
    }
    assert cases["test_totals"].message.startswith("expected 30, got 31")
    assert cases["test_totals"].seconds == 1.5
    assert "report reports/bomb.xml refused: refused as unsafe XML" in log
    assert "report reports/unit.xml: 2 passed, 1 failed" in log

    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Token {api_token_issue(user=User.objects.create_user('bot'))}"
    )
    answer = api.get(f"/api/v1/runs/{run.pk}/tests/").json()
    assert answer["counts"] == {"failed": 1, "error": 0, "skipped": 0, "passed": 2}
    assert [step["name"] for step in answer["steps"]] == ["lint", "unit"]
    assert answer["cases"][0] == {
        "step": "unit",
        "report": "reports/unit.xml",
        "classname": "tests.test_cart",
        "name": "test_totals",
        "file": "",
        "status": "failed",
        "seconds": 1.5,
        "message": "expected 30, got 31 cart.total() == 31",
    }


def test_a_parallel_group_runs_its_steps_side_by_side(
    tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    repo = busybox_app_repo(tmp_path / "repo")
    repo.write(
        "dockyard.yml",
        """\
images:
  app: {}
test:
  steps:
    - parallel: true
      steps:
        - {name: left, command: ["sh", "-c", "sleep 2; echo left done"]}
        - {name: right, command: ["sh", "-c", "sleep 2; echo right done"]}
    - {name: after, command: ["sh", "-c", "echo after both"]}
""",
    )
    project = make_project(repository_url=repo.url)

    run = pushed_run(project, repo.commit("side by side"))

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    left, right, after = TestStep.objects.filter(run=run).order_by("position")
    assert left.group == right.group != after.group
    # Side by side: each started before the other finished; the next group after both.
    assert left.started_at < right.finished_at and right.started_at < left.finished_at
    assert after.started_at >= max(left.finished_at, right.finished_at)


def test_a_cache_folder_is_kept_between_runs_of_a_branch_and_never_shared(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    spec = """\
images:
  app: {}
test:
  cache: ["/cache"]
  command: ["sh", "-c", "cat /cache/seen 2>/dev/null || echo 'cache empty'; date > /cache/seen"]
"""
    repo = busybox_app_repo(tmp_path / "repo")
    repo.write("dockyard.yml", spec)
    project = make_project(repository_url=repo.url)
    other_repo = busybox_app_repo(tmp_path / "other")
    other_repo.write("dockyard.yml", spec)
    other = make_project(repository_url=other_repo.url)

    first = pushed_run(project, repo.commit("first"))
    second = pushed_run(project, repo.commit("second"))
    stranger = pushed_run(other, other_repo.commit("another project"))

    # A line of its own (the command echoed above it names it too).
    empty = "\ncache empty\n"
    assert empty in stage_log_text(first.stages.get(name="test"))
    assert empty not in stage_log_text(second.stages.get(name="test"))
    assert empty in stage_log_text(stranger.stages.get(name="test"))
    mine, theirs = (CacheVolume.objects.get(project=p) for p in (project, other))
    assert mine.volume != theirs.volume
    assert (
        docker_client.volumes.get(mine.volume).attrs["Labels"]["dockyard.project"] == project.slug
    )


@contextmanager
def listening_on(port: int) -> Iterator[None]:
    """Something listens on the host's 127.0.0.1:`port` while the block runs (a `make up`
    already may: then it is that)."""
    with socket.socket() as listener:
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
        except OSError:
            pass  # taken: by a listener already
        yield
