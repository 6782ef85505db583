"""Test containers are throwaway and locked down; hostile ones fail cleanly, the host stays fine."""

import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from pipelines.models import PipelineRun
from pipelines.selectors import stage_log_text
from pipelines.services import project_secret_set, run_cancel
from pipelines.states import RunStatus, StageStatus
from tests.factories import busybox_app_repo, make_project

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def spec(**test: str) -> str:
    lines = ["images:", "  app: {}", "test:", '  command: ["sh", "/app/test.sh"]']
    lines += [f"  {key}: {value}" for key, value in test.items()]
    return "\n".join(lines) + "\n"


def run_test_script(
    tmp_path: Path,
    pushed_run: Callable[..., PipelineRun],
    script: str,
    *,
    project_secrets: dict[str, str] | None = None,
    **test: str,
) -> tuple[PipelineRun, str]:
    repo = busybox_app_repo(tmp_path / "repo", test_script=script)
    repo.write("dockyard.yml", spec(**test))
    project = make_project(repository_url=repo.url)
    for name, value in (project_secrets or {}).items():
        project_secret_set(project=project, name=name, value=value)
    run = pushed_run(project, repo.commit("test"))
    return run, stage_log_text(run.stages.get(name="test"))


def containers_of(client: docker.DockerClient, run: PipelineRun) -> list[object]:
    return client.containers.list(
        all=True, sparse=True, filters={"label": f"dockyard.run={run.pk}"}
    )


@pytest.fixture
def worker(celery_worker: str) -> str:
    return celery_worker


def test_the_test_container_has_no_network_no_capabilities_no_socket_and_a_plain_user(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    script = """\
echo "interfaces: $(ls /sys/class/net | tr '\\n' ' ')"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
echo "uid: $(id -u)"
test -e /var/run/docker.sock && echo "socket: present" || echo "socket: absent"
"""
    run, log = run_test_script(tmp_path, pushed_run, script, user='"1000:1000"')
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert "interfaces: lo \n" in log
    assert "CapEff:\t0000000000000000" in log
    assert "NoNewPrivs:\t1" in log
    assert "uid: 1000" in log
    assert "socket: absent" in log


def test_network_egress_is_refused_and_the_run_fails(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    script = """\
if wget -q -T 3 -O /dev/null http://127.0.0.1:5000/v2/; then echo "egress: reached"; exit 0; fi
echo "egress: refused"; exit 1
"""
    run, log = run_test_script(tmp_path, pushed_run, script)
    assert run.status == RunStatus.FAILED
    assert "egress: refused" in log and "egress: reached" not in log


def test_a_fork_bomb_is_held_by_the_pids_limit_and_killed_at_its_timeout(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    script = "echo 'forking'\nbomb() { bomb | bomb & }\nbomb\nsleep 60\n"
    run, log = run_test_script(tmp_path, pushed_run, script, pids="64", timeout="8")
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "test"
    assert "longer than 8s and was killed" in run.failure_reason
    assert "forking" in log
    # The pids limit, not the host, is what the bomb ran into.
    assert "can't fork" in log
    assert containers_of(docker_client, run) == []
    assert docker_client.ping()


def test_a_memory_balloon_is_killed_and_reported(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    script = "echo 'inflating'\nhead -c 300m /dev/zero | tail > /dev/null\necho 'survived'\n"
    run, log = run_test_script(tmp_path, pushed_run, script, memory="32m")
    assert run.status == RunStatus.FAILED
    assert "ran out of memory (32 MiB)" in run.failure_reason
    assert "inflating" in log
    assert containers_of(docker_client, run) == []


def test_secrets_reach_the_test_and_are_masked_even_when_split_across_output(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    secret = "s3cr3t-value-1234"
    script = """\
echo "token is $API_TOKEN"
printf 's3cr3t-'
sleep 1.2
printf 'value-1234 was split\\n'
"""
    run, log = run_test_script(
        tmp_path, pushed_run, script, project_secrets={"API_TOKEN": secret}, secrets="[API_TOKEN]"
    )
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert "token is ••••••" in log
    assert "•••••• was split" in log
    assert secret not in log and "s3cr3t" not in log


def test_a_secret_the_project_does_not_have_fails_the_test_stage_naming_it(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    run, _ = run_test_script(tmp_path, pushed_run, "true\n", secrets="[NPM_TOKEN]")
    assert run.status == RunStatus.FAILED
    assert run.failure_reason == "test.secrets: not set for this project: NPM_TOKEN"


def test_cancelling_a_run_stops_its_test_container_within_seconds(
    tmp_path: Path,
    worker: str,
    push: Callable[..., PipelineRun],
    wait_for_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo", test_script="echo started\nsleep 300\n")
    repo.write("dockyard.yml", spec())
    project = make_project(repository_url=repo.url)
    run = push(project, repo.commit("slow"))
    deadline = time.monotonic() + 120
    while "started" not in stage_log_text(run.stages.get(name="test")):
        assert time.monotonic() < deadline, "the test never started"
        time.sleep(0.1)
    assert len(containers_of(docker_client, run)) == 1

    cancelled_at = time.monotonic()
    assert run_cancel(run=run, reason="cancelled by the test")
    while containers_of(docker_client, run):
        assert time.monotonic() - cancelled_at < 30, "the container outlived the cancel"
        time.sleep(0.1)

    run = wait_for_run(run)
    assert run.status == RunStatus.CANCELLED
    assert {s.name: s.status for s in run.stages.all()}["test"] == StageStatus.CANCELLED
    assert {s.name: s.status for s in run.stages.all()}["publish"] == StageStatus.CANCELLED
