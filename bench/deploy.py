"""Deploy and rollback durations next to a bare container start, under load, zero failures.

Against the Dockyard `make up` runs (its worker and the HAProxy it runs): one app is pushed
twice (v1, v2), each release reaches staging by itself; then production gets v1, is promoted
to v2 and rolled back to v1 while a loopback load generator hammers production's frontend.
Side by side, the raw tool: `docker run` of the same image to its first 200.

Then the three-host case (`make hosts`: three more engines on 127.0.0.2-4): an environment on
the three hosts, each with its own HAProxy, behind an outer HAProxy on 127.0.0.1; v1 goes out,
v2 is promoted a host at a time and rolled back on all three at once, under load through the
outer balancer. The hosts' engines are reached on their sockets (the fleet tests drive them over
ssh and TLS; here the time is Dockyard's own).

Prints: deploy and rollback durations (from the call to the proxy serving the other version,
and to the deployment's end), per host and in all, the bare start, the ratios, and failed
requests. Targets: rollback within 1 s end to end (one host, and three) and within 3x the bare
container start; zero failed requests throughout. Run with `make bench-deploy`.
"""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from audit.actors import cli_actor  # noqa: E402
from bench.local_forge import commit_all, git, signed_push  # noqa: E402
from pipelines.models import PipelineRun  # noqa: E402
from pipelines.states import RUN_FINAL_STATES  # noqa: E402
from projects.models import Project  # noqa: E402
from projects.services import project_create  # noqa: E402
from projects.spec import DeploySpec, EnvironmentSpec  # noqa: E402
from releases.hosts import environment_hosts_set, host_save  # noqa: E402
from releases.models import Deployment, Environment, Release  # noqa: E402
from releases.proxy import proxies_reconcile  # noqa: E402
from releases.services import (  # noqa: E402
    deployment_request,
    environment_rollback,
    environments_sync,
)
from releases.states import DEPLOYMENT_FINAL_STATES  # noqa: E402
from releases.tools import deploy_tools  # noqa: E402

SERVER = os.environ.get("DOCKYARD_BENCH_SERVER", "http://127.0.0.1:8000")
DOCKER = "/usr/bin/docker"
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www/ /app/www/
CMD ["sh", "-c", "exec httpd -f -p ${HOST}:${PORT} -h /app/www"]
"""
SPEC = """\
images:
  app: {}
deploy:
  port: 8000
  health: /healthz
  environments:
    staging: {auto: true, branches: [main]}
    production: {after: staging}
"""


class Load:
    """GETs against one port from a few threads, bounded in time; counts what was not a 200."""

    def __init__(self, port: int, seconds: float = 120, *, address: str = "") -> None:
        self.port, self.deadline = port, time.monotonic() + seconds
        self.address = address or str(settings.DOCKYARD_APP_ADDRESS)
        self.requests, self.failures = 0, 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(3)]

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
            with self.lock:
                self.requests += 1
                self.failures += 0 if ok else 1
            time.sleep(0.002)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def commit_version(repo: Path, version: str) -> str:
    (repo / "www" / "index.html").write_text(f"{version}\n")
    return commit_all(repo, version)


def push(secret: str, repo: Path, sha: str) -> PipelineRun:
    run = PipelineRun.objects.get(pk=signed_push(server=SERVER, secret=secret, repo=repo, sha=sha))
    while run.status not in RUN_FINAL_STATES:
        time.sleep(0.05)
        run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit(f"run {run} {run.status}: {run.failure_reason}")
    return run


def wait(deployment: Deployment) -> Deployment:
    while deployment.status not in DEPLOYMENT_FINAL_STATES:
        time.sleep(0.005)
        deployment.refresh_from_db()
    if deployment.status != "succeeded":
        raise SystemExit(f"{deployment} failed: {deployment.failure_reason}")
    return deployment


def serving(port: int, version: str, address: str = "") -> bool:
    try:
        connection = http.client.HTTPConnection(
            address or settings.DOCKYARD_APP_ADDRESS, port, timeout=2
        )
        connection.request("GET", "/")
        return connection.getresponse().read().decode().strip() == version
    except (OSError, http.client.HTTPException):
        return False


def timed_move(
    start_move: object, port: int, version: str, addresses: tuple[str, ...] = ("",)
) -> tuple[float, float, Deployment]:
    """(seconds until every address's proxy serves `version`, seconds until the deployment
    ended, the deployment)."""
    started = time.perf_counter()
    deployment = start_move()  # type: ignore[operator]
    served_after = None
    while served_after is None:
        if all(serving(port, version, address) for address in addresses):
            served_after = time.perf_counter() - started
        elif time.perf_counter() - started > 300:
            raise SystemExit(f"{version} never served; deployment {deployment.pk} is stuck")
        else:
            time.sleep(0.002)
    wait(deployment)
    return served_after, time.perf_counter() - started, deployment


def bare_container_start(image: str) -> float:
    """`docker run` of the image on the host network to its first 200."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = f"bench-bare-{uuid.uuid4().hex[:8]}"
    address = str(settings.DOCKYARD_APP_ADDRESS)  # where Dockyard starts the same image
    started = time.perf_counter()
    subprocess.run(
        [
            *(DOCKER, "run", "-d", "--name", name, "--network", "host"),
            *("-e", f"HOST={address}", "-e", f"PORT={port}", image),
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not serving(port, "v1", address):
            if time.monotonic() > deadline:
                raise SystemExit(f"the bare container {name} never answered on {address}:{port}")
            time.sleep(0.002)
        return time.perf_counter() - started
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="dockyard-bench-deploy-"))
    repo = workspace / "app"
    (repo / "www").mkdir(parents=True)
    shutil.copy("/bin/busybox", repo / "busybox")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "dockyard.yml").write_text(SPEC)
    (repo / "www" / "healthz").write_text("ok\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    project = project_create(slug=f"bench-deploy-{uuid.uuid4().hex[:8]}", repository_url=str(repo))

    releases = []
    for version in ("v1", "v2"):
        run = push(project.webhook_secret, repo, commit_version(repo, version))
        while not Release.objects.filter(run=run).exists():
            time.sleep(0.05)
        release = Release.objects.get(run=run)
        staging_deployment = None
        while staging_deployment is None:
            staging_deployment = Deployment.objects.filter(release=release).first()
            time.sleep(0.05)
        wait(staging_deployment)
        releases.append(release)
    v1, v2 = releases
    production = Environment.objects.get(project=project, name="production")
    wait(deployment_request(environment=production, release=v1))

    bare = [bare_container_start(v1.image) for _ in range(3)]
    with Load(production.frontend_port) as load:
        time.sleep(0.5)
        deploy_served, deploy_done, _ = timed_move(
            lambda: deployment_request(environment=production, release=v2),
            production.frontend_port,
            "v2",
        )
        time.sleep(0.5)
        rollback_served, rollback_done, _ = timed_move(
            lambda: environment_rollback(environment=production), production.frontend_port, "v1"
        )
        time.sleep(0.5)

    bare_start = sorted(bare)[1]
    print(f"{'':34}{'serving (s)':>12}{'done (s)':>10}")
    print(f"{'deploy v1 -> v2 (new container)':34}{deploy_served:12.2f}{deploy_done:10.2f}")
    print(f"{'rollback v2 -> v1 (kept container)':34}{rollback_served:12.2f}{rollback_done:10.2f}")
    print(f"{'bare docker run to first 200':34}{bare_start:12.2f}   (median of 3)")
    # End to end: from the call until production serves the old version again. "done" adds
    # the housekeeping after it (the new slot drained, its container stopped and kept).
    print(f"rollback / bare start: {rollback_served / bare_start:.2f}   target <= 3.00")
    print(f"rollback end to end:   {rollback_served:.2f} s   target <= 1.00 s")
    print(f"requests during deploy and rollback: {load.requests}, failed: {load.failures}")
    failures = load.failures
    if HOST_SOCKETS[0].exists():
        failures += three_hosts(project, v1, v2, bare_start)
    else:
        print("\nthree hosts: skipped (run `make hosts` first)")
    shutil.rmtree(workspace, ignore_errors=True)
    if failures:
        raise SystemExit("FAILED: requests failed during a deployment")


HOST_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
HOST_SOCKETS = tuple(Path(f"/run/dockyard/hosts/{a}/docker.sock") for a in HOST_ADDRESSES)


def three_hosts(project: Project, v1: Release, v2: Release, bare_start: float) -> int:
    """The three-host case; returns the failed requests."""
    hosts = [
        host_save(
            name=f"bench-h{number}",
            engine_url=f"unix://{socket_path}",
            address=address,
            actor=cli_actor(None),
        )[0]
        for number, (address, socket_path) in enumerate(
            zip(HOST_ADDRESSES, HOST_SOCKETS, strict=True), start=1
        )
    ]
    [fleet] = environments_sync(
        project=project,
        deploy=DeploySpec(
            port=8000,
            health="/healthz",
            environments=(EnvironmentSpec(name="fleet", auto=False, branches=(), after=None),),
        ),
    )
    environment_hosts_set(environment=fleet, hosts=hosts, max_parallel=1, actor=cli_actor(None))
    # The local host's proxy drops the new environment's frontend (made on it first) before
    # the bench hosts' proxies bind the same port on their addresses.
    proxies_reconcile(deploy_tools())
    wait(deployment_request(environment=fleet, release=v1))
    port = fleet.frontend_port
    with outer_balancer(port) as outer_port, Load(outer_port, address="127.0.0.1") as load:
        time.sleep(0.5)
        promote_served, promote_done, promotion = timed_move(
            lambda: deployment_request(environment=fleet, release=v2), port, "v2", HOST_ADDRESSES
        )
        time.sleep(0.5)
        rollback_served, rollback_done, rollback = timed_move(
            lambda: environment_rollback(environment=fleet), port, "v1", HOST_ADDRESSES
        )
        time.sleep(0.5)
    print("\nthree hosts behind an outer HAProxy (promotion a host at a time, rollback at once)")
    print(f"{'':34}{'serving (s)':>12}{'done (s)':>10}")
    print(f"{'promote v1 -> v2 (3 batches)':34}{promote_served:12.2f}{promote_done:10.2f}")
    print(f"{'rollback v2 -> v1 (all at once)':34}{rollback_served:12.2f}{rollback_done:10.2f}")
    for name, deployment in (("promotion", promotion), ("rollback", rollback)):
        parts = ", ".join(
            f"{t.host.name} {(t.finished_at - t.started_at).total_seconds():.2f} s"
            for t in deployment.host_deployments.select_related("host").order_by("position")
            if t.started_at and t.finished_at
        )
        print(f"  {name} per host (start to switched): {parts}")
    print(f"rollback of 3 hosts end to end: {rollback_served:.2f} s   target <= 1.00 s")
    print(f"rollback of 3 hosts / bare start: {rollback_served / bare_start:.2f}")
    print(f"requests through the outer balancer: {load.requests}, failed: {load.failures}")
    return load.failures


@contextmanager
def outer_balancer(port: int) -> Iterator[int]:
    """A plain HAProxy on 127.0.0.1 over the three hosts' frontends on `port`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        outer_port = probe.getsockname()[1]
    servers = "".join(f"    server h{n} {a}:{port}\n" for n, a in enumerate(HOST_ADDRESSES, 1))
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as config:
        config.write(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n"
            "    timeout server 30s\n    option redispatch\n    retries 3\n"
            "    retry-on conn-failure empty-response response-timeout\n"
            f"frontend outer\n    bind 127.0.0.1:{outer_port}\n    default_backend hosts\n"
            f"backend hosts\n    balance roundrobin\n{servers}"
        )
    process = subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", config.name])
    try:
        while not serving(outer_port, "v1", "127.0.0.1"):
            time.sleep(0.01)
        yield outer_port
    finally:
        process.terminate()
        process.wait(timeout=10)
        os.unlink(config.name)


if __name__ == "__main__":
    main()
