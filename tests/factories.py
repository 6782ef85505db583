"""Things tests make: projects, git repositories, signed GitHub deliveries."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from projects.models import Project
from projects.services import project_create
from webhooks.signatures import github_signature

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
BUSYBOX = Path("/bin/busybox")

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
WORKDIR /app
COPY app/ /app/
"""


def fixture_bytes(name: str) -> bytes:
    """A real delivery, byte for byte (signatures are over exact bytes)."""
    return (FIXTURES / name).read_bytes()


def unique_slug(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_project(**fields: Any) -> Project:
    fields.setdefault("slug", unique_slug())
    fields.setdefault("repository_url", f"https://github.com/acme/{fields['slug']}.git")
    fields.setdefault("webhook_secret", "It's a Secret to Everybody")
    return project_create(**fields)


class GitRepo:
    """A local git repository a test commits to, as a developer would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    @property
    def url(self) -> str:
        return str(self.path)

    def write(self, relative: str, content: str | bytes) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    def commit(self, message: str = "change") -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def git(self, *args: str) -> str:
        completed = subprocess.run(
            ["git", "-c", "user.name=Test", "-c", "user.email=test@dockyard.invalid", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
        )
        return completed.stdout.strip()


def busybox_app_repo(path: Path, *, test_script: str = "echo tests pass\n") -> GitRepo:
    """A repository whose Dockerfile builds offline from the static busybox."""
    repo = GitRepo(path)
    shutil.copy(BUSYBOX, path / "busybox")
    repo.write("Dockerfile", BUSYBOX_DOCKERFILE)
    repo.write("app/test.sh", test_script)
    return repo


def github_push_body(
    *, clone_url: str, sha: str, ref: str = "refs/heads/main", message: str = "change"
) -> bytes:
    """GitHub's captured push delivery, pointed at another repository and commit."""
    payload = json.loads(fixture_bytes("github-push.json"))
    payload.update(ref=ref, after=sha)
    payload["head_commit"].update(id=sha, message=message)
    payload["repository"].update(clone_url=clone_url, ssh_url=clone_url, git_url=clone_url)
    return json.dumps(payload).encode()


def github_headers(
    *, secret: str, body: bytes, event: str = "push", delivery: str | None = None
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": github_signature(secret=secret, body=body),
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


BASE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
ONBUILD COPY app/ /app/
ONBUILD RUN echo "onbuild ran" > /app/onbuild.txt
"""
APP_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
"""
STACK_SPEC = """\
images:
  base:
    dockerfile: docker/base.Dockerfile
    context: docker
  app:
    dockerfile: Dockerfile
    from: base
test:
  image: app
  command: ["sh", "/app/test.sh"]
"""


def stack_repo(path: Path, *, spec: str = STACK_SPEC, test_script: str = "echo ok\n") -> GitRepo:
    """A repository with a base (busybox + ONBUILD) and a one-line app Dockerfile on top."""
    repo = GitRepo(path)
    (path / "docker").mkdir()
    shutil.copy(BUSYBOX, path / "docker" / "busybox")
    repo.write("docker/base.Dockerfile", BASE_DOCKERFILE)
    repo.write("Dockerfile", APP_DOCKERFILE)
    # The app's context is the repository root; the base's files need not travel with it.
    repo.write(".dockerignore", "docker/\n")
    repo.write("app/test.sh", test_script)
    repo.write("app/version.txt", "1\n")
    repo.write("dockyard.yml", spec)
    return repo


WEB_APP_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www/ /app/www/
# Listens where Dockyard says: host networking, one port per slot.
CMD ["sh", "-c", \
     "echo listening on ${HOST}:${PORT}; exec httpd -f -v -p ${HOST}:${PORT} -h /app/www"]
"""
WEB_APP_SPEC = """\
images:
  app: {}
deploy:
  port: 8000
  health: /healthz
  environments:
    staging: {auto: true, branches: [main]}
    production: {after: staging}
"""


def web_app_repo(path: Path) -> GitRepo:
    """A deployable app: it serves its version at / and answers /healthz."""
    repo = GitRepo(path)
    shutil.copy(BUSYBOX, path / "busybox")
    repo.write("Dockerfile", WEB_APP_DOCKERFILE)
    repo.write("dockyard.yml", WEB_APP_SPEC)
    return repo


WEB_APP_WORK_SCRIPT = """\
#!/bin/sh
# /cgi-bin/work: answers 500 when asked (?fail), and to {percent}% of the other requests.
status=200
case "$QUERY_STRING" in fail*) status=500 ;; esac
if [ $((RANDOM % 100)) -lt {percent} ]; then status=500; fi
if [ $status = 500 ]; then echo "Status: 500 Internal Server Error"; fi
echo "Content-Type: text/plain"
echo
echo "{version} $status replica=$DOCKYARD_REPLICA"
"""


def web_app_version(
    repo: GitRepo, version: str, *, healthy: bool = True, error_percent: int = 0
) -> str:
    """Commit version `version` of the app; an unhealthy one has no /healthz. Its
    /cgi-bin/work fails `error_percent` of requests (after its health check passed)."""
    repo.write("www/index.html", f"{version}\n")
    repo.write(
        "www/cgi-bin/work", WEB_APP_WORK_SCRIPT.format(percent=error_percent, version=version)
    )
    (repo.path / "www" / "cgi-bin" / "work").chmod(0o755)
    health = repo.path / "www" / "healthz"
    if healthy:
        repo.write("www/healthz", "ok\n")
    elif health.exists():
        health.unlink()
    return repo.commit(f"version {version}")


def make_run(project: Project, *, ref: str = "refs/heads/main", sha: str = "e" * 40) -> Any:
    """A queued run and its pending stages, with no task sent: nothing will run it."""
    from pipelines.models import PipelineRun, Stage
    from pipelines.states import STAGE_ORDER

    run = PipelineRun.objects.create(
        project=project, number=1, ref=ref, commit_sha=sha, trigger="manual"
    )
    Stage.objects.bulk_create(
        Stage(run=run, name=name, position=position) for position, name in enumerate(STAGE_ORDER)
    )
    return run


def make_release(
    project: Project, number: int, *, image: str = "", deploy_config: dict[str, Any] | None = None
) -> Any:
    """Release `number` of `project`, from a passed run of its own; nothing was built unless
    `image` names what was."""
    from pipelines.models import PipelineRun
    from releases.models import Release

    sha = f"{number:x}".rjust(40, "a")
    run = PipelineRun.objects.create(
        project=project,
        number=number,
        ref="refs/heads/main",
        commit_sha=sha,
        trigger="manual",
        status="succeeded",
    )
    return Release.objects.create(
        project=project,
        number=number,
        run=run,
        commit_sha=sha,
        image=image or f"127.0.0.1:5000/{project.slug}@sha256:{number:064x}",
        deploy_config=deploy_config or {},
    )


def make_environment(
    project: Project, name: str, *, after: Any = None, hosts: list[Any] | None = None
) -> Any:
    """An environment on free ports of this test session's ranges, on `hosts` (default: the
    local host); no proxy is started."""
    from django.conf import settings

    from releases.models import Environment
    from releases.services import local_host

    used: set[int] = set()
    for ports in Environment.objects.values_list("frontend_port", "blue_port", "green_port"):
        used.update(ports)
    frontend = next(p for p in settings.DOCKYARD_FRONTEND_PORTS if p not in used)
    blue, green = [p for p in settings.DOCKYARD_SLOT_PORTS if p not in used][:2]
    environment = Environment.objects.create(
        project=project,
        name=name,
        frontend_port=frontend,
        blue_port=blue,
        green_port=green,
        after=after,
    )
    environment.hosts.set(hosts if hosts is not None else [local_host()])
    return environment


def make_host(name: str, address: str, engine_url: str = "") -> Any:
    from releases.models import Host

    return Host.objects.create(name=name, address=address, engine_url=engine_url)


def make_succeeded_deployment(environment: Any, release: Any, *, live: bool = False) -> Any:
    """A deployment that already succeeded (no container ran); `live` makes it what serves."""
    from django.utils import timezone

    from releases.models import Deployment, Environment

    deployment = Deployment.objects.create(
        environment=environment,
        release=release,
        kind="deploy",
        status="succeeded",
        slot="blue",
        finished_at=timezone.now(),
    )
    if live:
        Environment.objects.filter(pk=environment.pk).update(
            current_release=release, live_slot="blue"
        )
        environment.refresh_from_db()
    return deployment


def make_traffic_sample(
    environment: Any,
    release: Any,
    *,
    started_at: Any,
    seconds: float = 5,
    statuses: dict[int, int] | None = None,
    total_ms: int = 40,
    host: Any = None,
    rolled_up: bool = False,
) -> Any:
    """A request sample as the collector writes it: `statuses` counts requests by status code
    (none: a slot that served nothing), each taking `total_ms`."""
    from datetime import timedelta

    from releases.models import TrafficSample
    from releases.services import local_host
    from releases.traffic_figures import COUNT_FIELDS, Figures

    figures = Figures()
    for status, count in (statuses or {}).items():
        for _ in range(count):
            figures.count(status, total_ms)
    return TrafficSample.objects.create(
        environment=environment,
        host=host or local_host(),
        release=release,
        slot="blue" if release is not None else "",
        rolled_up=rolled_up,
        started_at=started_at,
        ended_at=started_at + timedelta(seconds=seconds),
        time_buckets=figures.time_buckets,
        **{name: getattr(figures, name) for name in COUNT_FIELDS},
    )


def escaping_link(repo: GitRepo, name: str, target: str) -> None:
    """Commit-ready links making `name` resolve to the absolute path `target` on the machine
    that checks the repository out, through relative links only.

    Each link is extracted before the one it leads through (l02 before l03, ...), which is how
    such a chain slips past a check that looks at the disk one member at a time.
    """
    depth = 16
    for level in range(2, depth + 1):
        link = repo.path / f"l{level:02d}"
        link.symlink_to("." if level == depth else f"l{level + 1:02d}/..")
    (repo.path / "l01").symlink_to("l02" + target)
    (repo.path / name).symlink_to("l01")


def make_run_in_state(
    project: Project,
    *,
    number: int = 1,
    status: str = "succeeded",
    at_stage: str = "",
    failure_reason: str = "",
    ended_because: str = "",
    log: list[tuple[str, str]] | None = None,
    **fields: Any,
) -> Any:
    """A run that got as far as `status` says, made directly (no task is sent, no worker will
    touch it), with its stages as such a run leaves them.

    The stages before `at_stage` succeeded, each in a minute; `at_stage` failed, was cancelled,
    or is running, as the run; the stages after it were skipped (a failure), cancelled, or wait
    (a running run). `ended_because` is the reason the run's last move records (who cancelled
    it, say), and `log` its stored log, (stage name, text) chunk by chunk.
    """
    from datetime import timedelta

    from django.utils import timezone

    from pipelines.models import LogChunk, PipelineRun, RunEvent, Stage
    from pipelines.states import STAGE_ORDER

    began = timezone.now() - timedelta(minutes=len(STAGE_ORDER) + 2)
    running = status == "running"
    fields.setdefault("commit_sha", uuid.uuid4().hex + "0" * 8)
    fields.setdefault("ref", "refs/heads/main")
    fields.setdefault("trigger", "webhook")
    run = PipelineRun.objects.create(
        project=project,
        number=number,
        status=status,
        failed_stage=at_stage if status == "failed" else "",
        failure_reason=failure_reason,
        started_at=began + timedelta(seconds=5),
        finished_at=None if running else began + timedelta(minutes=len(STAGE_ORDER), seconds=5),
        **fields,
    )
    PipelineRun.objects.filter(pk=run.pk).update(created_at=began)
    after_stage = {"failed": "skipped", "running": "pending"}.get(status, "cancelled")
    reached = False
    for position, name in enumerate(STAGE_ORDER):
        if name == at_stage:
            stage_status, reached = status, True
        else:
            stage_status = after_stage if reached else "succeeded"
        started = began + timedelta(minutes=position, seconds=5)
        ran = name == at_stage or not reached
        Stage.objects.create(
            run=run,
            name=name,
            position=position,
            status=stage_status,
            queued_at=started - timedelta(seconds=2) if ran else None,
            started_at=started if ran else None,
            finished_at=started + timedelta(minutes=1)
            if ran and stage_status != "running"
            else None,
        )
    stages = {stage.name: stage for stage in run.stages.all()}
    LogChunk.objects.bulk_create(
        LogChunk(run=run, stage=stages[stage], seq=seq, text=text)
        for seq, (stage, text) in enumerate(log or [], start=1)
    )
    if status == "failed" and not ended_because:
        ended_because = f"{at_stage}: {failure_reason}"
    RunEvent.objects.create(run=run, from_status="queued", to_status=status, reason=ended_because)
    run.refresh_from_db()
    return run
