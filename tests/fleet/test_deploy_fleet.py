"""A production environment on three hosts (scripts/hosts.sh: an engine and an sshd each on
127.0.0.2-4), each reached over ssh and running its own HAProxy, behind an outer HAProxy on
127.0.0.1 that spreads requests over the three, as a load balancer in front of a fleet would.
Two deploy workers (tests/fleet/conftest.py) carry the deployments; continuous load goes
through the outer balancer all along and not one request may fail."""

import itertools
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings

from infrastructure.docker_engine import MANAGED_LABEL, DockerEngine
from infrastructure.haproxy import (
    PROXY_LABEL,
    REQUEST_LOG_TAG,
    HostHAProxy,
    proxy_container_name,
)
from projects.models import Project
from releases.models import (
    Deployment,
    Environment,
    Host,
    HostDeployment,
    Release,
    TrafficSample,
)
from releases.selectors import rollback_target
from releases.services import (
    deployment_request,
    environment_operate,
    environment_rollback,
    environment_scale,
)
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentKind, DeploymentStatus, HostStatus
from tests.conftest import registry_login
from tests.factories import BUSYBOX, make_environment, make_project, make_release
from tests.fleet.conftest import SOCKETS, Fleet, FleetWorker, registry_digest
from tests.load import LoadGenerator, LoadResult

pytestmark = [
    pytest.mark.docker,
    pytest.mark.fleet,
    pytest.mark.django_db(transaction=True),
]

HOSTS = {"h1": "127.0.0.2", "h2": "127.0.0.3", "h3": "127.0.0.4"}
# The engines as the test itself looks at them (the deploy workers go over ssh).
HOST_SOCKETS = {"h1": SOCKETS["w1"], "h2": SOCKETS["w2"], "h3": SOCKETS["w3"]}
OUTER_PORT = settings.DOCKYARD_FRONTEND_PORTS[-2]

APP_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www/ /app/www/
ENV SICK_ON={sick_on}
# Listens where Dockyard says; a release built "sick on" a host address has no health page
# there (a machine missing what the release needs).
CMD ["sh", "-c", "[ \\"$HOST\\" = \\"$SICK_ON\\" ] && rm /app/www/healthz; \
exec httpd -f -p ${{HOST}}:${{PORT}} -h /app/www"]
"""
# A request that takes a while: the slot it is on cannot finish draining before it ends.
SLOW_CGI = """\
#!/bin/sh
sleep 6
printf 'Content-Type: text/plain\\r\\n\\r\\nslow\\n'
"""


@pytest.fixture(scope="module")
def deployers(fleet: Fleet) -> Iterator[Fleet]:
    """Two deploy workers beside the fleet's build workers; they drive every host over ssh."""
    # Host h1 shares 127.0.0.2 with the suite's `local` host: the proxy earlier tests left
    # there would hold the ports these tests' environments get.
    with DockerEngine(settings.DOCKER_HOST) as engine:
        engine.remove_containers(
            labels={PROXY_LABEL: "local", MANAGED_LABEL: settings.DOCKYARD_INSTANCE}
        )
    for name in ("d1", "d2"):
        fleet.workers[name] = FleetWorker(
            name=name,
            hostname=f"{fleet.workers['w1'].hostname.replace('-w1-', f'-{name}-')}",
            data_dir=settings.DATA_DIR / "fleet" / name,
            log_path=settings.DATA_DIR / "log" / f"fleet-{name}.log",
            engine_url="unix:///var/run/docker.sock",
            roles="deploy",
        )
        fleet.start(name)
    try:
        yield fleet
    finally:
        for name in ("d1", "d2"):
            fleet.stop(name)
            del fleet.workers[name]
        for socket in HOST_SOCKETS.values():
            client = docker.DockerClient(base_url=socket)
            ours = f"{MANAGED_LABEL}={settings.DOCKYARD_INSTANCE}"
            for label in ("dockyard.environment", PROXY_LABEL):
                for container in client.containers.list(all=True, filters={"label": [label, ours]}):
                    container.remove(force=True)
            client.close()


@pytest.fixture
def production(deployers: Fleet, tmp_path: Path) -> Iterator["Production"]:
    for name in ("d1", "d2"):
        if not deployers.workers[name].alive():
            deployers.start(name)
    hosts = [
        Host.objects.create(
            name=name, address=address, engine_url=f"ssh://dockyard-remote@{address}"
        )
        for name, address in HOSTS.items()
    ]
    project = make_project()
    environment = make_environment(project, "production", hosts=hosts)
    Environment.objects.filter(pk=environment.pk).update(
        max_parallel=1, health_path="/healthz", health_timeout_seconds=20, drain_timeout_seconds=20
    )
    environment.refresh_from_db()
    outer = OuterBalancer(tmp_path / "outer", environment.frontend_port)
    try:
        yield Production(deployers, project, environment, tmp_path, outer)
    finally:
        outer.stop()
        for socket in HOST_SOCKETS.values():
            client = docker.DockerClient(base_url=socket)
            for container in client.containers.list(
                all=True, filters={"label": f"dockyard.project={project.slug}"}
            ):
                container.remove(force=True)
            client.close()


class OuterBalancer:
    """A plain HAProxy on 127.0.0.1 over the three hosts' frontends, as a team's load balancer
    would be (docs/deployments.md shows the same config)."""

    def __init__(self, folder: Path, frontend_port: int) -> None:
        folder.mkdir(parents=True)
        config = folder / "haproxy.cfg"
        servers = "\n".join(
            f"    server {name} {address}:{frontend_port}" for name, address in HOSTS.items()
        )
        config.write_text(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n"
            "    timeout server 30s\n    option redispatch\n    retries 3\n"
            "    retry-on conn-failure empty-response response-timeout\n\n"
            f"frontend outer\n    bind 127.0.0.1:{OUTER_PORT}\n    default_backend hosts\n\n"
            f"backend hosts\n    balance roundrobin\n{servers}\n"
        )
        self.process = subprocess.Popen(
            ["/usr/sbin/haproxy", "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "haproxy.log", "wb"),  # noqa: SIM115 - closed with the process
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def load(self) -> LoadGenerator:
        return LoadGenerator(OUTER_PORT, address="127.0.0.1", threads=3, max_seconds=240)


class Production:
    def __init__(
        self,
        fleet: Fleet,
        project: Project,
        environment: Environment,
        folder: Path,
        outer: OuterBalancer,
    ) -> None:
        self.fleet, self.project, self.environment = fleet, project, environment
        self.folder, self.outer = folder, outer
        self.numbers = iter(range(1, 100))

    def release(
        self, version: str, *, sick_on: str = "", release_command: tuple[str, ...] = ()
    ) -> Release:
        """Build the app at `version` with the raw tools, push it, make it a release."""
        context = self.folder / f"build-{version}"
        (context / "www" / "cgi-bin").mkdir(parents=True)
        shutil.copy(BUSYBOX, context / "busybox")
        (context / "www" / "index.html").write_text(f"{version}\n")
        (context / "www" / "healthz").write_text("ok\n")
        slow = context / "www" / "cgi-bin" / "slow"
        slow.write_text(SLOW_CGI)
        slow.chmod(0o755)
        (context / "Dockerfile").write_text(APP_DOCKERFILE.format(sick_on=sick_on or "none"))
        repository = f"{settings.DOCKYARD_REGISTRY}/{self.project.slug}"
        client = docker.DockerClient(base_url=settings.DOCKER_HOST)
        try:
            client.images.build(path=str(context), tag=f"{repository}:{version}", rm=True)
            login = registry_login()
            auth = {"username": login[0], "password": login[1]} if login else None
            client.images.push(repository, tag=version, auth_config=auth)
        finally:
            client.close()
        digest = registry_digest(repository, version)
        return make_release(
            self.project,
            next(self.numbers),
            image=f"{repository}@{digest}",
            deploy_config={
                "port": 8000,
                "health": "/healthz",
                "release_command": list(release_command),
                "release_timeout": 60,
            },
        )

    def deploy(self, release: Release) -> Deployment:
        return self.finished(deployment_request(environment=self.environment, release=release))

    def deployed(self, version: str) -> Deployment:
        """`version` released and deployed to every host, as a test's starting point."""
        deployment = self.deploy(self.release(version))
        assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.failure_reason
        return deployment

    def finished(self, deployment: Deployment, timeout: float = 240) -> Deployment:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            deployment.refresh_from_db()
            if deployment.status in DEPLOYMENT_FINAL_STATES:
                return deployment
            time.sleep(0.1)
        raise AssertionError(f"deployment {deployment.pk} still {deployment.status}")

    def served_on_each_host(self) -> dict[str, str]:
        port = self.environment.frontend_port
        return {
            name: requests.get(f"http://{address}:{port}/", timeout=5).text.strip()
            for name, address in HOSTS.items()
        }

    def on_host(self, deployment: Deployment, name: str) -> HostDeployment:
        return HostDeployment.objects.get(deployment=deployment, host__name=name)

    def host_status(self, deployment: Deployment, name: str) -> str:
        """Where host `name`'s part is ("" before the deployment has prepared its hosts)."""
        statuses = HostDeployment.objects.filter(deployment=deployment, host__name=name)
        return statuses.values_list("status", flat=True).first() or ""


def no_failures(result: LoadResult) -> None:
    assert result.requests > 50, "the load hardly ran"
    assert result.failures == [], result.failures[:5]


def wait_until(check: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_a_promotion_goes_host_by_host_under_load_with_no_failed_request(
    production: Production,
) -> None:
    first = production.deploy(production.release("v1"))
    assert first.status == DeploymentStatus.SUCCEEDED, first.failure_reason
    v2 = production.release("v2")

    with production.outer.load() as load:
        promotion = production.deploy(v2)

    assert promotion.status == DeploymentStatus.SUCCEEDED, promotion.failure_reason
    no_failures(load.result)
    assert load.result.bodies == {"v1", "v2"}
    assert production.served_on_each_host() == {"h1": "v2", "h2": "v2", "h3": "v2"}
    # One batch at a time, in order: each host switched before the next one started.
    targets = list(promotion.host_deployments.order_by("position"))
    assert [t.batch for t in targets] == [0, 1, 2]
    for earlier, later in itertools.pairwise(targets):
        assert earlier.finished_at is not None and later.started_at is not None
        switched = promotion.events.get(host=earlier.host, to_status=HostStatus.SWITCHED)
        assert switched.at <= later.started_at
    # Every event of a host's part names the host.
    assert set(promotion.events.exclude(host=None).values_list("host__name", flat=True)) == set(
        HOSTS
    )


def test_a_host_failing_its_health_check_sends_the_others_back_with_no_failed_request(
    production: Production,
) -> None:
    production.deployed("v1")
    sick = production.release("v2-sick-on-h3", sick_on=HOSTS["h3"])

    with production.outer.load() as load:
        failed = production.deploy(sick)

    assert failed.status == DeploymentStatus.FAILED
    assert failed.failure_reason.startswith("host h3: health check failed")
    assert failed.failure_reason.endswith("switched back: h1, h2")
    assert [production.on_host(failed, name).status for name in HOSTS] == [
        HostStatus.REVERTED,
        HostStatus.REVERTED,
        HostStatus.FAILED,
    ]
    no_failures(load.result)
    assert production.served_on_each_host() == {"h1": "v1", "h2": "v1", "h3": "v1"}
    production.environment.refresh_from_db()
    assert production.environment.current_release.number == 1


def test_the_worker_killed_while_host_2_switches_is_replaced_and_no_host_is_left_half_switched(
    production: Production,
) -> None:
    production.deployed("v1")
    v2 = production.release("v2")

    with production.outer.load() as load:
        deployment = deployment_request(environment=production.environment, release=v2)
        # A slow request on host 2's old slot keeps it draining: the switch is under way
        # long enough to kill the worker in the middle of it.
        wait_until(
            lambda: production.host_status(deployment, "h2") not in {"", HostStatus.WAITING},
            "host 2's part begins",
        )
        slow = subprocess.Popen(
            [
                "curl",
                "-sf",
                f"http://{HOSTS['h2']}:{production.environment.frontend_port}/cgi-bin/slow",
            ],
            stdout=subprocess.PIPE,
        )
        wait_until(
            lambda: production.host_status(deployment, "h2") == HostStatus.DRAINING,
            "host 2 switches",
        )
        carrier = production.on_host(deployment, "h2").worker.split(":")[0]
        [victim] = [w.name for w in production.fleet.workers.values() if w.hostname == carrier]
        production.fleet.kill(victim)
        ended = production.finished(deployment)
        slow_answer, _ = slow.communicate(timeout=30)

    assert ended.status == DeploymentStatus.SUCCEEDED, ended.failure_reason
    assert slow_answer.decode().strip() == "slow"  # the drained slot finished its request
    no_failures(load.result)
    h2 = production.on_host(ended, "h2")
    assert h2.attempts == 2 and not h2.worker.startswith(carrier)
    assert production.served_on_each_host() == {"h1": "v2", "h2": "v2", "h3": "v2"}


def test_a_hosts_haproxy_removed_is_made_again_as_the_database_says(
    production: Production,
) -> None:
    production.deployed("v1")
    client = docker.DockerClient(base_url=HOST_SOCKETS["h2"])
    try:
        client.containers.get(proxy_container_name("h2")).remove(force=True)
        with pytest.raises(requests.ConnectionError):
            production.served_on_each_host()

        wait_until(
            lambda: _answers(f"http://{HOSTS['h2']}:{production.environment.frontend_port}/"),
            "a deploy worker's housekeeper makes host 2's proxy again",
            timeout=60,
        )
        assert production.served_on_each_host() == {"h1": "v1", "h2": "v1", "h3": "v1"}
        assert client.containers.get(proxy_container_name("h2")).status == "running"
    finally:
        client.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def test_rollback_switches_all_three_hosts_at_once_and_the_next_offers_the_right_release(
    production: Production,
) -> None:
    for version in ("v1", "v2", "v3"):
        production.deployed(version)
    environment = Environment.objects.get(pk=production.environment.pk)
    assert rollback_target(environment).release.number == 2

    with production.outer.load() as load:
        rollback = production.finished(environment_rollback(environment=environment))

    assert rollback.status == DeploymentStatus.SUCCEEDED, rollback.failure_reason
    no_failures(load.result)
    assert production.served_on_each_host() == {"h1": "v2", "h2": "v2", "h3": "v2"}
    assert set(rollback.host_deployments.values_list("batch", flat=True)) == {0}
    assert all(t.reused_container for t in rollback.host_deployments.all())
    # Rolled back from 3 to 2: the next rollback goes on to 1, never back to 3.
    environment.refresh_from_db()
    assert rollback_target(environment).release.number == 1


def test_a_failing_release_command_leaves_every_host_on_the_old_release(
    production: Production,
) -> None:
    production.deployed("v1")
    migrating = production.release("v2", release_command=("sh", "-c", "echo migrating; exit 4"))

    failed = production.deploy(migrating)

    assert failed.status == DeploymentStatus.FAILED
    assert "`sh -c echo migrating; exit 4` exited with status 4 on h1" in failed.failure_reason
    assert "migrating" in failed.release_log
    assert not failed.host_deployments.exclude(status=HostStatus.WAITING).exists()
    assert production.served_on_each_host() == {"h1": "v1", "h2": "v1", "h3": "v1"}


def test_killing_a_deploy_worker_process_group_leaves_no_proxy_down(production: Production) -> None:
    # The hosts' proxies are containers of their own: a deploy worker gone takes none down.
    production.deployed("v1")
    for name in ("d1", "d2"):
        production.fleet.kill(name)
    assert production.served_on_each_host() == {"h1": "v1", "h2": "v1", "h3": "v1"}


def test_a_rolling_restart_goes_host_by_host_and_every_hosts_requests_are_counted(
    production: Production,
) -> None:
    production.deployed("v1")
    environment = production.environment

    with production.outer.load() as load:
        restart = production.finished(
            environment_operate(environment=environment, kind=DeploymentKind.RESTART)
        )

    assert restart.status == DeploymentStatus.SUCCEEDED, restart.failure_reason
    no_failures(load.result)
    assert load.result.bodies == {"v1"}
    assert [t.batch for t in restart.host_deployments.order_by("position")] == [0, 1, 2]
    # The deploy workers' collectors read each host's proxy: every request the load sent is
    # counted once, on the host that answered it.
    samples = TrafficSample.objects.filter(environment=environment)

    def counted() -> int:
        return sum(samples.values_list("requests", flat=True))

    def hosts_counted() -> set[str]:
        return set(samples.filter(requests__gt=0).values_list("host__name", flat=True))

    # HAProxy drops a log line its output pipe has no room for (the engine behind on a busy
    # machine) and counts it: those requests no collector can see, and it says so.
    dropped_on: dict[str, int] = {}
    for name in HOSTS:
        with DockerEngine(HOST_SOCKETS[name]) as engine:
            dropped_on[name] = HostHAProxy(engine, host=name).log_lines_dropped()
    dropped = sum(dropped_on.values())

    try:
        wait_until(
            lambda: counted() + dropped >= load.result.requests, "every request sent is counted"
        )
    except AssertionError:
        raise AssertionError(
            f"{counted()} of {load.result.requests} requests counted, {dropped} dropped: "
            + "; ".join(
                f"{request_log_report(environment, name)}, {dropped_on[name]} dropped"
                for name in HOSTS
            )
        ) from None
    assert hosts_counted() == set(HOSTS)
    assert dropped <= load.result.requests // 50, "HAProxy dropped more than a stray line"
    # The outer balancer may retry a request a host dropped; nothing else counts twice.
    assert counted() <= load.result.requests + 3


def request_log_report(environment: Environment, host: str) -> str:
    """What `host`'s proxy logged of the environment's requests beside what was counted of
    them, and the gaps between the host's sample windows: where requests went uncounted."""
    samples = TrafficSample.objects.filter(environment=environment, host__name=host)
    windows = sorted(set(samples.values_list("started_at", "ended_at")))
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(windows) if b[0] > a[1]]
    overlaps = [(a[1], b[0]) for a, b in itertools.pairwise(windows) if b[0] < a[1]]
    client = docker.DockerClient(base_url=HOST_SOCKETS[host])
    try:
        container = client.containers.get(proxy_container_name(host))
        output = container.logs(stdout=True, stderr=False, timestamps=True).decode()
        logged = [
            line.split(" ", 1)[0]
            for line in output.splitlines()
            if f" {REQUEST_LOG_TAG} {environment.proxy_backend} " in line
        ]
    finally:
        client.close()
    first = windows[0][0].isoformat() if windows else "-"
    last = windows[-1][1].isoformat() if windows else "-"
    return (
        f"{host}: counted {sum(samples.values_list('requests', flat=True))}, logged "
        f"{len(logged)} ({logged[0] if logged else '-'} to {logged[-1] if logged else '-'}), "
        f"sampled {first} to {last} in {len(windows)} windows, gaps {gaps[:3]}, overlaps "
        f"{overlaps[:3]}"
    )


def test_scaled_to_three_replicas_every_host_runs_three_with_no_failed_request(
    production: Production,
) -> None:
    production.deployed("v1")

    with production.outer.load() as load:
        scaled = production.finished(
            environment_scale(environment=production.environment, replicas=3)
        )

    assert scaled.status == DeploymentStatus.SUCCEEDED, scaled.failure_reason
    no_failures(load.result)
    for socket in HOST_SOCKETS.values():
        client = docker.DockerClient(base_url=socket)
        try:
            running = client.containers.list(
                filters={
                    "label": ["dockyard.role=app", f"dockyard.project={production.project.slug}"]
                }
            )
        finally:
            client.close()
        assert len(running) == 3, socket
    assert production.served_on_each_host() == {"h1": "v1", "h2": "v1", "h3": "v1"}
