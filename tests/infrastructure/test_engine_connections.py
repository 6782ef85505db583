"""Engines reached over ssh and over TCP with TLS client certificates: other dockerds on this
machine (scripts/hosts.sh: 127.0.0.2-4), as a worker on another host would reach its engine."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrastructure.docker_engine import (
    ContainerLimits,
    DockerEngine,
    DockerEngineError,
    KeptEngines,
)
from tests.factories import busybox_app_repo

pytestmark = [pytest.mark.docker, pytest.mark.fleet]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_HOME = Path("/var/lib/dockyard/hosts/client")


@pytest.fixture(scope="module", autouse=True)
def hosts() -> None:
    subprocess.run([str(ROOT / "scripts" / "hosts.sh"), "up"], check=True, capture_output=True)


@pytest.fixture
def client_home(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> Path:
    """The worker user's home as scripts/hosts.sh prepares it (ssh config, key, known hosts;
    TLS certificates), copied so that a test may spoil it."""
    home = tmp_path / "home"
    shutil.copytree(CLIENT_HOME, home)
    config = home / ".ssh" / "config"
    config.write_text(config.read_text().replace(str(CLIENT_HOME), str(home)))
    monkeypatch.setenv("HOME", str(home))
    settings.DOCKER_TLS_VERIFY = True
    settings.DOCKER_CERT_PATH = home / ".docker"
    return home


def build_and_run(engine: DockerEngine, tmp_path: Path) -> str:
    context = tmp_path / "context"
    busybox_app_repo(context, test_script="echo hello from the far side\n")
    image = engine.build_image(
        context_dir=context,
        dockerfile=context / "Dockerfile",
        tag="fleet/hello:1",
        on_output=lambda _: None,
    )
    output: list[str] = []
    outcome = engine.run_throwaway(
        image=image,
        command=["sh", "/app/test.sh"],
        labels={"dockyard.test": "engine-connections"},
        timeout=60,
        limits=ContainerLimits(),
        on_output=output.append,
    )
    assert outcome.exit_code == 0
    return "".join(output)


@pytest.mark.parametrize(
    ("url", "data_root"),
    [
        ("ssh://dockyard-remote@127.0.0.2", "/var/lib/dockyard/hosts/127.0.0.2/docker"),
        ("tcp://127.0.0.3:2376", "/var/lib/dockyard/hosts/127.0.0.3/docker"),
    ],
)
def test_an_engine_on_another_host_builds_and_runs_over_ssh_and_over_tls(
    client_home: Path, tmp_path: Path, url: str, data_root: str
) -> None:
    with DockerEngine(url) as engine:
        assert engine.identity().data_root == data_root
        assert build_and_run(engine, tmp_path) == "hello from the far side\n"


def test_an_ssh_host_whose_key_is_not_known_is_refused_naming_known_hosts(
    client_home: Path,
) -> None:
    (client_home / ".ssh" / "known_hosts").write_text("")

    with pytest.raises(
        DockerEngineError, match=r"127\.0\.0\.2 is not in the worker's ~/\.ssh/known_hosts"
    ):
        DockerEngine("ssh://dockyard-remote@127.0.0.2")


def test_an_ssh_key_the_host_does_not_accept_is_refused_naming_the_user(
    client_home: Path,
) -> None:
    key = client_home / ".ssh" / "id_ed25519"
    key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    with pytest.raises(DockerEngineError, match="refused the worker's key"):
        DockerEngine("ssh://dockyard-remote@127.0.0.2")


def test_tls_with_a_certificate_the_engine_did_not_sign_is_refused(
    client_home: Path, tmp_path: Path
) -> None:
    # A client certificate of another CA: the engine asks for one of its own CA's.
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=intruder",
            "-keyout",
            str(other / "key.pem"),
            "-out",
            str(other / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("cert.pem", "key.pem"):
        shutil.copy(other / name, client_home / ".docker" / name)

    with (
        pytest.raises(DockerEngineError, match=r"127\.0\.0\.3:2376"),
        DockerEngine("tcp://127.0.0.3:2376") as engine,
    ):
        engine.identity()


def test_plain_tcp_to_an_engine_off_this_host_is_refused(settings: Any) -> None:
    settings.DOCKER_TLS_VERIFY = False

    with pytest.raises(DockerEngineError, match="set DOCKER_TLS_VERIFY=1"):
        DockerEngine("tcp://192.0.2.10:2375")


def test_tls_without_its_certificates_says_which_files_are_missing(
    settings: Any, tmp_path: Path
) -> None:
    settings.DOCKER_TLS_VERIFY = True
    settings.DOCKER_CERT_PATH = tmp_path

    with pytest.raises(DockerEngineError, match=r"DOCKER_CERT_PATH lacks .*ca\.pem"):
        DockerEngine("tcp://127.0.0.3:2376")


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    yield
    for socket in ("127.0.0.2", "127.0.0.3"):
        subprocess.run(
            [
                "docker",
                "-H",
                f"unix:///run/dockyard/hosts/{socket}/docker.sock",
                "container",
                "prune",
                "-f",
                "--filter",
                "label=dockyard.test=engine-connections",
            ],
            capture_output=True,
        )


def test_kept_engines_reuse_one_ssh_connection_and_connect_again_after_a_failure(
    client_home: Path,
) -> None:
    url = "ssh://dockyard-remote@127.0.0.2"
    connected: list[DockerEngine] = []

    def counted(url: str) -> DockerEngine:
        connected.append(DockerEngine(url))
        return connected[-1]

    kept = KeptEngines(counted)
    try:
        for _ in range(3):
            with kept(url) as engine:
                assert engine.identity().name
        assert len(connected) == 1

        # An engine call failed in use (the connection broke, say): it is not used again.
        with pytest.raises(DockerEngineError), kept(url):
            raise DockerEngineError("the connection to 127.0.0.2 was reset")
        with kept(url) as engine:
            assert engine.identity().name
        assert len(connected) == 2
    finally:
        kept.close()
