"""A build fleet: the same 30 pushes through one worker, then through three, each worker on a
host of its own (scripts/hosts.sh: its own engine), against the raw docker CLI doing the same
work on one engine, side by side in this script.

Ten app projects build `from: project:<base>`: one base project publishes the shared base
once (a few seconds of "installing a runtime" and a 32 MB layer); each of the 30 pushes (three
per app project, taken round-robin) builds the app layer on it, runs its test and publishes.

Prints, for one worker and for three: runs per minute, the ratio, base rebuilds (target: 1 in
all, the base project's own), and `published == tested` (the digest the test stage ran is
the digest the registry publishes). On a 2-core machine three engines will not be 3x one:
the figures say what they reach, and the stage times say where the time goes.

Run with `make bench-fleet`: its own PostgreSQL database, Redis database and data folder.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DOCKYARD_ALLOW_LOCAL_REPOSITORIES", "true")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test import Client  # noqa: E402

from bench.local_forge import commit_all, git  # noqa: E402
from bench.raw_docker import docker  # noqa: E402
from builds.models import LayerBuild, LayerRole  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from infrastructure.dispatch import QUEUES  # noqa: E402
from pipelines.models import PipelineRun, TestStep  # noqa: E402
from pipelines.states import RUN_FINAL_STATES  # noqa: E402
from projects.models import Project  # noqa: E402
from projects.services import project_create  # noqa: E402
from webhooks.signatures import github_signature  # noqa: E402

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PROJECTS = 10
PUSHES = 30
BASE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
# {nonce}: cold for each bench.
RUN echo "{nonce}" > /etc/bench-nonce
RUN sleep 4 && mkdir -p /opt && dd if=/dev/urandom of=/opt/runtime.bin bs=1M count=32 2>/dev/null
ONBUILD COPY app/ /app/
"""
BASE_SPEC = """\
images:
  base:
    dockerfile: base.Dockerfile
"""
APP_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
APP_SPEC = """\
images:
  app:
    dockerfile: Dockerfile
    from: project:{base}
test:
  command: ["sh", "/app/test.sh"]
"""
TEST_SCRIPT = "test -s /opt/runtime.bin && grep -q hello /app/greeting.txt && echo 'tests pass'\n"


def main() -> None:
    subprocess.run([str(ROOT / "scripts" / "hosts.sh"), "up"], check=True)
    call_command("migrate", verbosity=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    nonce = uuid.uuid4().hex[:8]
    purge_queues()
    try:
        with workers(1) as _:
            base = base_project(workdir, nonce)
            apps = [app_project(workdir, nonce, base, n) for n in range(PROJECTS)]
            one = pushes_through(apps, "1 worker", nonce)
        with workers(3) as _:
            three = pushes_through(apps, "3 workers", nonce)
        raw = raw_cli(workdir, nonce)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"{'':24}{'runs/min':>10}{'median run':>12}{'base rebuilds':>15}{'published==tested':>20}"
    )
    for label, result in (("1 worker", one), ("3 workers", three)):
        print(
            f"{label:24}{result.per_minute:>10.1f}{result.median:>11.1f}s"
            f"{result.base_rebuilds:>15}{result.same:>17}/{PUSHES}"
        )
    print(f"{'raw docker CLI, 1 engine':24}{raw:>10.1f}")
    print()
    print(f"3 workers / 1 worker:        {three.per_minute / one.per_minute:.2f}x")
    print(f"1 worker / raw docker CLI:   {one.per_minute / raw:.2f}")
    print(f"base rebuilds in all:        {base_rebuilds(nonce)} (target 1)")
    print("where the time goes (median seconds per stage, 3 workers):")
    for stage, seconds in three.stages.items():
        print(f"  {stage:10} {seconds:6.2f}")


def purge_queues() -> None:
    with celery_app.connection_for_write() as connection:
        for queue in QUEUES:
            connection.default_channel.queue_purge(queue)


@contextmanager
def workers(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` build workers, the n-th on host HOSTS[n]'s engine with its own data folder."""
    processes = []
    names = []
    log_dir = settings.DATA_DIR / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    for number, host in enumerate(HOSTS[:count], start=1):
        name = f"bench-w{number}-{uuid.uuid4().hex[:6]}@localhost"
        environment = {
            **os.environ,
            "DOCKER_HOST": f"unix:///run/dockyard/hosts/{host}/docker.sock",
            "DOCKYARD_DATA_DIR": str(settings.DATA_DIR / "workers" / f"w{number}"),
            "DOCKYARD_INSTANCE": settings.DOCKYARD_INSTANCE,
            "DOCKYARD_WORKER_ROLES": "build",
            "DOCKYARD_UPSTREAM_CHECK_SECONDS": "0",
        }
        with open(log_dir / f"bench-w{number}.log", "ab") as log:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        *("-m", "celery", "-A", "config", "worker", "--concurrency", "1"),
                        *("--hostname", name, "--without-gossip", "--without-mingle"),
                    ],
                    cwd=ROOT,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        names.append(name)
    deadline = time.monotonic() + 90
    while len(celery_app.control.ping(destination=names, timeout=1)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench workers did not start; see {log_dir}")
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)


def repository(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "init", "--quiet", "--initial-branch=main")
    return path


def base_project(workdir: Path, nonce: str) -> Project:
    path = repository(
        workdir / "base",
        {"base.Dockerfile": BASE_DOCKERFILE.format(nonce=nonce), "dockyard.yml": BASE_SPEC},
    )
    shutil.copy("/bin/busybox", path / "busybox")
    project = project_create(slug=f"bench-base-{nonce}", repository_url=str(path))
    run = wait(push(project, path, commit_all(path, "base")))
    if run.status != "succeeded":
        raise SystemExit(f"the base project's run {run.status}: {run.failure_reason}")
    return project


def app_project(workdir: Path, nonce: str, base: Project, number: int) -> Project:
    path = repository(
        workdir / f"app-{number}",
        {
            "Dockerfile": APP_DOCKERFILE,
            "dockyard.yml": APP_SPEC.format(base=base.slug),
            "app/test.sh": TEST_SCRIPT,
            "app/greeting.txt": "hello 0\n",
        },
    )
    commit_all(path, "first")
    return project_create(slug=f"bench-app-{nonce}-{number}", repository_url=str(path))


def push(project: Project, path: Path, sha: str, branch: str = "main") -> PipelineRun:
    """A signed GitHub push of `sha` to `branch`, handled by Dockyard's webhook view in this
    process."""
    body = json.dumps(
        {
            "ref": f"refs/heads/{branch}",
            "after": sha,
            "repository": {"clone_url": str(path)},
            "head_commit": {"id": sha, "message": "bench"},
        }
    ).encode()
    # A host the settings allow (the test client says "testserver" otherwise).
    response = Client(HTTP_HOST="127.0.0.1").post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(secret=project.webhook_secret, body=body),
        },
    )
    if response.status_code != 202:
        raise SystemExit(f"the push was refused: {response.status_code} {response.content!r}")
    return PipelineRun.objects.filter(project=project, commit_sha=sha).latest("number")


def wait(run: PipelineRun) -> PipelineRun:
    while run.status not in RUN_FINAL_STATES:
        time.sleep(0.1)
        run.refresh_from_db()
    return run


@dataclass(frozen=True)
class Throughput:
    per_minute: float
    median: float
    base_rebuilds: int
    # Runs whose test ran the digest the registry published.
    same: int
    # Median seconds per stage.
    stages: dict[str, float]


def pushes_through(apps: list[Project], label: str, nonce: str) -> Throughput:
    runs = []
    started = time.perf_counter()
    for number in range(PUSHES):
        project = apps[number % len(apps)]
        path = Path(project.repository_url)
        (path / "app" / "greeting.txt").write_text(f"hello {label} {number}\n")
        sha = commit_all(path, f"{label} {number}")
        # A branch per push: a newer push to the same branch would cancel the run before it.
        branch = f"bench-{label.replace(' ', '-')}-{number}"
        git(path, "branch", "-f", branch, sha)
        runs.append(push(project, path, sha, branch))
    runs = [wait(run) for run in runs]
    elapsed = time.perf_counter() - started
    failed = [run for run in runs if run.status != "succeeded"]
    if failed:
        raise SystemExit(
            f"{len(failed)} run(s) failed, e.g. {failed[0]}: {failed[0].failure_reason}"
        )
    durations = [(run.finished_at or run.created_at) - run.created_at for run in runs]
    stages: dict[str, list[float]] = {}
    for run in runs:
        for stage in run.stages.all():
            if stage.started_at and stage.finished_at:
                seconds = (stage.finished_at - stage.started_at).total_seconds()
                stages.setdefault(stage.name, []).append(seconds)
    same = sum(
        1
        for run in runs
        if TestStep.objects.filter(run=run, image__endswith=f"@{run.image_digest}").exists()
    )
    print(f"{label}: {PUSHES} runs in {elapsed:.1f}s")
    return Throughput(
        per_minute=PUSHES / elapsed * 60,
        median=statistics.median(duration.total_seconds() for duration in durations),
        base_rebuilds=base_rebuilds(nonce),
        same=same,
        stages={name: statistics.median(values) for name, values in stages.items()},
    )


def base_rebuilds(nonce: str) -> int:
    """How often this bench's shared base was built: its own project's builds, and any base
    layer of its apps (the database keeps earlier benches' projects)."""
    return LayerBuild.objects.filter(
        Q(run__project__slug=f"bench-base-{nonce}")
        | Q(role=LayerRole.BASE, run__project__slug__startswith=f"bench-app-{nonce}-"),
        source="built",
    ).count()


def raw_cli(workdir: Path, nonce: str) -> float:
    """The same 30 app builds, tests and pushes by hand on one engine, on a base built once."""
    base_dir = workdir / "raw-base"
    base_dir.mkdir()
    shutil.copy("/bin/busybox", base_dir / "busybox")
    (base_dir / "Dockerfile").write_text(BASE_DOCKERFILE.format(nonce=f"raw-{nonce}"))
    base = f"{settings.DOCKYARD_REGISTRY}/bench-raw-{nonce}/base:1"
    docker("build", "-q", "-t", base, str(base_dir))
    app_dir = workdir / "raw-app"
    (app_dir / "app").mkdir(parents=True)
    (app_dir / "Dockerfile").write_text(APP_DOCKERFILE)
    (app_dir / "app" / "test.sh").write_text(TEST_SCRIPT)
    started = time.perf_counter()
    for number in range(PUSHES):
        (app_dir / "app" / "greeting.txt").write_text(f"hello raw {number}\n")
        tag = f"{settings.DOCKYARD_REGISTRY}/bench-raw-{nonce}/app-{number % PROJECTS}:{number}"
        docker("build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(app_dir))
        docker("run", "--rm", "--network", "none", tag, "sh", "/app/test.sh")
        docker("push", tag)
    return PUSHES / (time.perf_counter() - started) * 60


if __name__ == "__main__":
    main()
