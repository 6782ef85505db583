"""The Docker adapter against the real engine."""

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
from django.conf import settings

from infrastructure.docker_engine import (
    LOG_LINES_FIRST_READ,
    ContainerLimits,
    DockerEngine,
    ImageBuildError,
    build_context_files,
)
from infrastructure.haproxy import HostHAProxy, proxy_container_name
from tests.factories import BUSYBOX_DOCKERFILE, busybox_app_repo

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("context")
    busybox_app_repo(context)
    with DockerEngine(settings.DOCKER_HOST) as engine:
        return engine.build_image(
            context_dir=context,
            dockerfile=context / "Dockerfile",
            tag="dockyard-test/busybox:latest",
            on_output=lambda _: None,
        )


@pytest.fixture
def engine() -> DockerEngine:
    with DockerEngine(settings.DOCKER_HOST) as engine:
        yield engine


def run(engine: DockerEngine, image: str, script: str, **kwargs: object) -> tuple[object, str]:
    output: list[str] = []
    label = kwargs.pop("labels", None) or {"dockyard.test": uuid.uuid4().hex}
    outcome = engine.run_throwaway(
        image=image,
        command=["sh", "-c", script],
        labels=label,
        timeout=kwargs.pop("timeout", 60),
        limits=kwargs.pop("limits", ContainerLimits()),
        on_output=output.append,
    )
    return outcome, "".join(output)


def test_a_build_streams_its_output_and_tags_the_image(
    tmp_path: Path, engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    busybox_app_repo(tmp_path)
    output: list[str] = []
    image_id = engine.build_image(
        context_dir=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        tag="dockyard-test/tagged:latest",
        on_output=output.append,
    )
    assert "Step 1/" in "".join(output)
    assert docker_client.images.get("dockyard-test/tagged:latest").id == image_id


def test_a_failing_build_step_is_an_image_build_error_with_the_reason(
    tmp_path: Path, engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    busybox_app_repo(tmp_path)
    (tmp_path / "Dockerfile").write_text(BUSYBOX_DOCKERFILE + "RUN exit 9\n")
    with pytest.raises(ImageBuildError, match="returned a non-zero code: 9"):
        engine.build_image(
            context_dir=tmp_path,
            dockerfile=tmp_path / "Dockerfile",
            tag="dockyard-test/broken:latest",
            on_output=lambda _: None,
        )
    # forcerm: the failed step's container does not linger.
    leftovers = docker_client.containers.list(all=True, filters={"status": "exited"})
    assert not [c for c in leftovers if "exit 9" in " ".join(c.attrs["Config"]["Cmd"] or [])]


def test_a_throwaway_container_has_no_network_and_is_removed(
    engine: DockerEngine, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    mine = f"dockyard.test={uuid.uuid4().hex}"
    outcome, output = run(
        engine, busybox_image, "ls /sys/class/net; echo done", labels=dict([mine.split("=")])
    )
    assert outcome.exit_code == 0
    assert output.split() == ["lo", "done"]
    assert docker_client.containers.list(all=True, sparse=True, filters={"label": mine}) == []


def test_a_throwaway_container_has_no_capabilities(
    engine: DockerEngine, busybox_image: str
) -> None:
    _, output = run(engine, busybox_image, "grep CapEff /proc/self/status")
    assert output.split() == ["CapEff:", "0000000000000000"]


def test_its_exit_status_is_reported(engine: DockerEngine, busybox_image: str) -> None:
    outcome, output = run(engine, busybox_image, "echo to stderr >&2; exit 4")
    assert (outcome.exit_code, outcome.timed_out) == (4, False)
    assert "to stderr" in output


def test_a_container_that_outlives_its_timeout_is_killed_and_reported(
    engine: DockerEngine, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    mine = f"dockyard.test={uuid.uuid4().hex}"
    outcome, output = run(
        engine,
        busybox_image,
        "echo before; sleep 60; echo after",
        timeout=1,
        labels=dict([mine.split("=")]),
    )
    assert outcome.timed_out and outcome.exit_code is None
    assert "before" in output and "after" not in output
    assert docker_client.containers.list(all=True, sparse=True, filters={"label": mine}) == []


def test_remove_containers_sweeps_by_label(
    engine: DockerEngine, busybox_image: str, docker_client: docker.DockerClient
) -> None:
    label = {"dockyard.run": f"sweep-{uuid.uuid4().hex}"}
    docker_client.containers.create(busybox_image, ["sleep", "60"], labels=label)
    assert engine.remove_containers(labels=label) == 1
    assert (
        docker_client.containers.list(
            all=True, filters={"label": "dockyard.run=" + label["dockyard.run"]}
        )
        == []
    )


def test_a_build_context_never_carries_git_whatever_dockerignore_says(
    tmp_path: Path, engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    busybox_app_repo(tmp_path).commit("history")  # a real .git folder
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "config").write_text("[core]\n")
    (tmp_path / ".dockerignore").write_text("!.git\n!**/.git\n")
    (tmp_path / "Dockerfile").write_text(BUSYBOX_DOCKERFILE + "COPY . /ctx/\n")

    assert not [p for p in build_context_files(tmp_path, tmp_path / "Dockerfile") if ".git" in p]
    image_id = engine.build_image(
        context_dir=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        tag="dockyard-test/no-git:latest",
        on_output=lambda _: None,
    )
    listing = docker_client.containers.run(
        image_id, ["find", "/ctx"], network_mode="none", remove=True
    ).decode()
    assert "/ctx/app/test.sh" in listing
    assert ".git" not in listing


def test_the_context_honours_dockerignore_and_a_dockerfile_outside_it(
    tmp_path: Path, engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    context = tmp_path / "context"
    busybox_app_repo(context)
    (context / "secret.key").write_text("do not ship\n")
    (context / ".dockerignore").write_text("secret.key\nDockerfile\n")
    (context / "Dockerfile").unlink()
    outside = tmp_path / "elsewhere" / "app.Dockerfile"
    outside.parent.mkdir()
    outside.write_text(BUSYBOX_DOCKERFILE + "COPY . /ctx/\n")

    files = build_context_files(context, outside)
    assert "secret.key" not in files and "busybox" in files and "app/test.sh" in files
    image_id = engine.build_image(
        context_dir=context,
        dockerfile=outside,
        tag="dockyard-test/outside:latest",
        on_output=lambda _: None,
    )
    listing = docker_client.containers.run(
        image_id, ["find", "/ctx"], network_mode="none", remove=True
    ).decode()
    assert "secret.key" not in listing
    assert "/ctx/busybox" in listing


def test_a_span_of_a_busy_containers_log_is_read_whole_however_many_lines_came_after_it(
    engine: DockerEngine, busybox_image: str
) -> None:
    # The engine counts a read's tail among all the lines it holds, those after the span too:
    # read naively, a span of a busy proxy's request log comes back cut, or empty.
    host = f"log-span-{uuid.uuid4().hex[:8]}"
    client = docker.DockerClient(base_url=settings.DOCKER_HOST)
    container = client.containers.run(
        busybox_image,
        ["sh", "-c", "while :; do echo 'dockyard-request be_7 blue 200 3'; usleep 200; done"],
        name=proxy_container_name(host),
        detach=True,
        network_mode="none",
    )
    try:
        time.sleep(0.5)
        since = datetime.now(UTC)
        time.sleep(0.5)
        until = datetime.now(UTC)

        def logged() -> list[datetime]:
            output = client.api.logs(container.id, stdout=True, stderr=False, timestamps=True)
            return [
                datetime.fromisoformat(line.split(" ", 1)[0])
                for line in output.decode().splitlines()
            ]

        deadline = time.monotonic() + 60
        while len([at for at in logged() if at > until]) < 3 * LOG_LINES_FIRST_READ:
            assert time.monotonic() < deadline, "the container stopped printing"
            time.sleep(0.2)
        in_span = [at for at in logged() if since < at <= until]

        requests = HostHAProxy(engine, host=host).requests_since(since, until)
        last_ten = engine.container_log_lines(
            container.id, stream="stdout", since=since, until=until, tail=10
        )
    finally:
        container.remove(force=True)
        client.close()

    assert len(in_span) > 10
    assert [request.at for request in requests] == in_span
    assert {(request.backend, request.server, request.status) for request in requests} == {
        ("be_7", "blue", 200)
    }
    assert [at for at, _ in last_ten] == in_span[-10:]
