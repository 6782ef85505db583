"""Dockyard's pipeline against the raw docker CLI doing the same build, test and push.

One repository with a base layer (busybox plus a "runtime" that takes a few seconds to install,
as apt-get or a compiler would) and a one-line app Dockerfile on top. Each side builds it cold,
then again after a one-line app change:

  Dockyard: signed webhook -> checkout -> config -> build stack -> test -> push, timed from the
            POST to the run's end, against the server `make up` runs;
  raw CLI:  docker build base; docker build app; docker run the test; docker push.

Prints the durations and the ratios the image-stack issue sets targets for:
  warm pipeline / warm raw CLI   <= 1.1
  warm build / cold build        <= 0.2
  base rebuilds on an app change == 0

Then a trivial sample, where Dockyard's own bookkeeping is most of the time: busybox and one
COPY, a one-line test, TRIVIAL_PUSHES warm pushes a side (the medians), against the raw CLI's
git worktree, docker build, docker run and docker push of the sha tag. Prints the seconds
Dockyard adds beside the ratio: target added <= 0.1 s (<= 1.15x).

Run with `make bench-pipeline` (it starts Dockyard with `make up` first).
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DOCKYARD_ALLOW_LOCAL_REPOSITORIES", "true")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.local_forge import commit_all, git, signed_push  # noqa: E402
from bench.raw_docker import docker  # noqa: E402
from builds.models import LayerBuild  # noqa: E402
from pipelines.models import PipelineRun  # noqa: E402
from pipelines.states import RUN_FINAL_STATES  # noqa: E402
from projects.services import project_create  # noqa: E402

SERVER = os.environ.get("DOCKYARD_BENCH_SERVER", "http://127.0.0.1:8000")
BASE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
# {nonce}: a cold start for each side, whatever the engine built before.
RUN echo "{nonce}" > /etc/bench-nonce
# Installing a runtime: a few seconds of work and a 32 MB layer.
RUN sleep 4 && mkdir -p /opt && dd if=/dev/urandom of=/opt/runtime.bin bs=1M count=32 2>/dev/null
ONBUILD COPY app/ /app/
"""
APP_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
SPEC = """\
images:
  base:
    dockerfile: docker/base.Dockerfile
    context: docker
  app:
    dockerfile: Dockerfile
    from: base
test:
  command: ["sh", "/app/test.sh"]
"""
TEST_SCRIPT = "test -s /opt/runtime.bin && grep -q hello /app/greeting.txt && echo 'tests pass'\n"
TRIVIAL_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY app/ /app/
"""
TRIVIAL_SPEC = """\
images:
  app:
    dockerfile: Dockerfile
test:
  command: ["/bin/busybox", "grep", "-q", "hello", "/app/greeting.txt"]
"""
TRIVIAL_PUSHES = int(os.environ.get("BENCH_TRIVIAL_PUSHES", "7"))


def make_repository(path: Path, nonce: str) -> None:
    (path / "docker").mkdir(parents=True)
    (path / "app").mkdir()
    shutil.copy("/bin/busybox", path / "docker" / "busybox")
    (path / "docker" / "base.Dockerfile").write_text(BASE_DOCKERFILE.format(nonce=nonce))
    (path / "Dockerfile").write_text(APP_DOCKERFILE)
    (path / ".dockerignore").write_text("docker/\n")
    (path / "app" / "test.sh").write_text(TEST_SCRIPT)
    (path / "app" / "greeting.txt").write_text("hello 1\n")
    (path / "dockyard.yml").write_text(SPEC)
    git(path, "init", "--quiet", "--initial-branch=main")


def make_trivial_repository(path: Path) -> None:
    (path / "app").mkdir(parents=True)
    shutil.copy("/bin/busybox", path / "busybox")
    (path / "Dockerfile").write_text(TRIVIAL_DOCKERFILE)
    (path / "app" / "greeting.txt").write_text("hello 0\n")
    (path / "dockyard.yml").write_text(TRIVIAL_SPEC)
    git(path, "init", "--quiet", "--initial-branch=main")


def raw_cli_trivial_run(repo: Path, sha: str, name: str) -> float:
    """The trivial sample by hand: check out, build, test, push the sha tag."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    started = time.perf_counter()
    git(repo, "worktree", "add", "--quiet", "--detach", str(workdir / "src"), sha)
    image = f"{settings.DOCKYARD_REGISTRY}/{name}:{sha}"
    docker("build", "-q", "-t", image, ".", cwd=workdir / "src")
    docker(
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "/bin/busybox",
        "grep",
        "-q",
        "hello",
        "/app/greeting.txt",
    )
    docker("push", image)
    elapsed = time.perf_counter() - started
    git(repo, "worktree", "remove", "--force", str(workdir / "src"))
    shutil.rmtree(workdir, ignore_errors=True)
    return elapsed


def trivial_sample(nonce: str, workspace: Path) -> None:
    dockyard_repo, raw_repo = workspace / "trivial-dockyard", workspace / "trivial-raw"
    make_trivial_repository(dockyard_repo)
    make_trivial_repository(raw_repo)
    project = project_create(slug=f"bench-trivial-{nonce}", repository_url=str(dockyard_repo))
    ours: list[float] = []
    raw: list[float] = []
    stages: dict[str, list[float]] = {}
    # The first push a side is the warm-up (busybox's layer is new to the registry).
    for version in range(TRIVIAL_PUSHES + 1):
        elapsed, run = dockyard_run(
            project.webhook_secret,
            dockyard_repo,
            trivial_app_change(dockyard_repo, version, f"dockyard-{nonce}"),
        )
        raw_elapsed = raw_cli_trivial_run(
            raw_repo,
            trivial_app_change(raw_repo, version, f"raw-{nonce}"),
            f"bench-trivial-raw-{nonce}",
        )
        if version:
            ours.append(elapsed)
            raw.append(raw_elapsed)
            for stage in run.stages.all():
                if stage.duration_seconds is not None:
                    stages.setdefault(stage.name, []).append(stage.duration_seconds)
    ours_median, raw_median = statistics.median(ours), statistics.median(raw)
    print()
    print(f"trivial sample, {TRIVIAL_PUSHES} warm pushes a side (medians):")
    print(f"{'':28}{'Dockyard':>10}{'raw CLI':>10}{'ratio':>8}{'added':>9}")
    print(
        f"{'warm pipeline (s)':28}{ours_median:10.2f}{raw_median:10.2f}"
        f"{ours_median / raw_median:8.2f}{ours_median - raw_median:9.2f}"
        "   target added <= 0.10 (<= 1.15x)"
    )
    print(
        "  Dockyard's stages (median s): "
        + ", ".join(f"{name} {statistics.median(times):.2f}" for name, times in stages.items())
    )


def trivial_app_change(path: Path, version: int, side: str) -> str:
    """A one-line change no engine has built before: busybox's layer stays warm for both sides,
    the app's COPY is new work for each. With the same greeting in every run of this bench,
    the raw CLI found its app layer in the engine's build cache, left by an earlier run, and
    built nothing: 0.09 s, where Dockyard's build of the new layer took 0.20 s."""
    (path / "app" / "greeting.txt").write_text(f"hello {version} from {side}\n")
    return commit_all(path, f"app change {version}")


def one_line_app_change(path: Path, version: int) -> str:
    (path / "app" / "greeting.txt").write_text(f"hello {version}\n")
    return commit_all(path, f"app change {version}")


def dockyard_run(project_secret: str, repo: Path, sha: str) -> tuple[float, PipelineRun]:
    started = time.perf_counter()
    run_id = signed_push(server=SERVER, secret=project_secret, repo=repo, sha=sha)
    run = PipelineRun.objects.get(pk=run_id)
    while run.status not in RUN_FINAL_STATES:
        # A look every 5 ms: polling adds half its interval to Dockyard's side on average
        # (the raw CLI's end is seen at once), 10 ms a run at 20 ms.
        time.sleep(0.005)
        run.refresh_from_db()
    elapsed = time.perf_counter() - started
    if run.status != "succeeded":
        raise SystemExit(f"Dockyard run {run} {run.status}: {run.failure_reason}")
    return elapsed, run


def raw_cli_run(repo: Path, sha: str, name: str) -> tuple[float, float]:
    """(whole pipeline, build part) seconds for the same work by hand with the docker CLI."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    started = time.perf_counter()
    git(repo, "worktree", "add", "--quiet", "--detach", str(workdir / "src"), sha)
    source = workdir / "src"
    base = f"{settings.DOCKYARD_REGISTRY}/{name}/base"
    app = f"{settings.DOCKYARD_REGISTRY}/{name}"
    build_started = time.perf_counter()
    docker(
        "build", "-q", "-f", "docker/base.Dockerfile", "-t", f"{base}:latest", "docker", cwd=source
    )
    docker(
        "build",
        "-q",
        "--build-arg",
        f"BASE_IMAGE={base}:latest",
        "-t",
        f"{app}:{sha}",
        ".",
        cwd=source,
    )
    build_seconds = time.perf_counter() - build_started
    docker("run", "--rm", "--network", "none", f"{app}:{sha}", "sh", "/app/test.sh")
    docker("push", f"{base}:latest")
    docker("push", f"{app}:{sha}")
    elapsed = time.perf_counter() - started
    git(repo, "worktree", "remove", "--force", str(workdir / "src"))
    shutil.rmtree(workdir, ignore_errors=True)
    return elapsed, build_seconds


def build_seconds(run: PipelineRun) -> float:
    build = run.stages.get(name="build")
    assert build.finished_at is not None and build.started_at is not None, "the build never ran"
    return (build.finished_at - build.started_at).total_seconds()


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    nonce = uuid.uuid4().hex[:12]
    dockyard_repo, raw_repo = workspace / "dockyard", workspace / "raw"
    make_repository(dockyard_repo, f"dockyard-{nonce}")
    make_repository(raw_repo, f"raw-{nonce}")
    project = project_create(slug=f"bench-{nonce}", repository_url=str(dockyard_repo))

    cold_dockyard, cold_run = dockyard_run(
        project.webhook_secret, dockyard_repo, one_line_app_change(dockyard_repo, 1)
    )
    cold_raw, cold_raw_build = raw_cli_run(
        raw_repo, one_line_app_change(raw_repo, 1), f"bench-raw-{nonce}"
    )
    warm_dockyard, warm_run = dockyard_run(
        project.webhook_secret, dockyard_repo, one_line_app_change(dockyard_repo, 2)
    )
    warm_raw, warm_raw_build = raw_cli_run(
        raw_repo, one_line_app_change(raw_repo, 2), f"bench-raw-{nonce}"
    )

    base_rebuilds = LayerBuild.objects.filter(run=warm_run, role="base", source="built").count()
    cold_build, warm_build = build_seconds(cold_run), build_seconds(warm_run)
    rows = [
        ("cold pipeline (s)", cold_dockyard, cold_raw, ""),
        ("warm pipeline (s)", warm_dockyard, warm_raw, "target <= 1.10"),
    ]
    print(f"{'':28}{'Dockyard':>10}{'raw CLI':>10}{'ratio':>8}")
    for label, ours, raw, target in rows:
        print(f"{label:28}{ours:10.2f}{raw:10.2f}{ours / raw:8.2f}   {target}")
    print(f"{'cold build (s)':28}{cold_build:10.2f}{cold_raw_build:10.2f}")
    print(f"{'warm build (s)':28}{warm_build:10.2f}{warm_raw_build:10.2f}")
    print(f"warm build / cold build:    {warm_build / cold_build:.2f}   target <= 0.20")
    print(f"base rebuilds on app change: {base_rebuilds}      target 0")
    trivial_sample(nonce, workspace)
    shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
