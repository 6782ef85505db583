"""Test containers are throwaway and locked down; hostile ones fail cleanly, the host stays fine."""

import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest
from django.conf import settings

from pipelines.models import PipelineRun
from pipelines.selectors import stage_log_text
from pipelines.services import run_cancel
from pipelines.states import RunStatus, StageStatus
from projects.services import project_secret_set
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


def test_by_default_a_test_reaches_nothing_on_the_host_neither_the_ui_nor_registry_nor_redis(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    redis_port = urlsplit(settings.REDIS_URL).port
    # The UI as a browser would find it; the registry; the broker; all listening on the host.
    with socket.socket() as ui:
        ui.bind(("127.0.0.1", 0))
        ui.listen()
        ports = [8000, ui.getsockname()[1], 5000, redis_port]
        script = "".join(
            f"if timeout 3 nc 127.0.0.1 {port} </dev/null; then echo '{port}: reached'; "
            f"else echo '{port}: refused'; fi\n"
            for port in ports
        )
        run, log = run_test_script(tmp_path, pushed_run, script)
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    for port in ports:
        assert f"{port}: refused" in log and f"{port}: reached" not in log, log


def test_a_test_asking_for_a_network_fails_at_config_naming_the_setting(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    run, _ = run_test_script(tmp_path, pushed_run, "true\n", network="true")
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "config"
    assert run.failure_reason == (
        "dockyard.yml:5: test.network: true is refused: this installation runs tests without a "
        "network (DOCKYARD_TEST_NETWORK=none; an operator may set it to host and allow the "
        "project)"
    )


@pytest.mark.parametrize(
    ("request_", "ceiling"),
    [
        ({"pids": "4000000"}, "4000000 is above this installation's ceiling of 4096"),
        ({"memory": "99999999g"}, "99999999g is above this installation's ceiling of 4g"),
    ],
)
def test_resources_above_the_ceilings_fail_at_config_naming_the_ceiling(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    request_: dict[str, str],
    ceiling: str,
) -> None:
    run, _ = run_test_script(tmp_path, pushed_run, "true\n", **request_)
    assert run.status == RunStatus.FAILED
    assert run.failed_stage == "config"
    assert ceiling in run.failure_reason
    assert "DOCKYARD_TEST_MAX_" in run.failure_reason


def test_a_fork_bomb_is_held_by_the_pids_limit_and_killed_at_its_timeout(
    tmp_path: Path,
    worker: str,
    pushed_run: Callable[..., PipelineRun],
    docker_client: docker.DockerClient,
) -> None:
    # The shell waits without forking (exec): once the bomb holds every pid the limit allows,
    # a forked sleep would fail at once and end the test before its timeout.
    script = "echo 'forking'\nbomb() { bomb | bomb & }\nbomb\nexec sleep 60\n"
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


def test_a_secret_split_across_stdout_and_stderr_is_masked_and_no_output_is_lost(
    tmp_path: Path, worker: str, pushed_run: Callable[..., PipelineRun]
) -> None:
    secret = "s3cr3t-value-1234"
    script = """\
printf 's3cr3t-'
sleep 0.5
printf 'value-1234 crossed streams\\n' >&2
printf 'a last line on stderr, without a newline' >&2
"""
    run, log = run_test_script(
        tmp_path, pushed_run, script, project_secrets={"API_TOKEN": secret}, secrets="[API_TOKEN]"
    )
    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert "•••••• crossed streams" in log
    assert "s3cr3t" not in log and "value-1234" not in log
    assert "a last line on stderr, without a newline" in log


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
    # The sweep and the stage both removing the container is no error of anyone's to show.
    reasons = [event.reason for event in run.events.all()]
    assert "cancelled by the test" in reasons
    assert not [reason for reason in reasons if "in progress" in reason], reasons
    assert "already in progress" not in stage_log_text(run.stages.get(name="test"))
