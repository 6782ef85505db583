"""A bounded soak: webhooks, builds and deploys together on loopback, memory watched.

Against the Dockyard `make up` runs (gunicorn and the uvicorn processes it forks, one Celery
worker running its tasks on two threads), for SECONDS after a warm-up, all at once:

  pushes:     an app (busybox httpd FROM scratch, staging auto-deploys main) gets a new commit
              every PUSH_EVERY seconds, pushed as a signed GitHub webhook; each must build,
              test, publish, become a release and reach staging before the next is pushed
              (a newer push would cancel an unfinished run, and staging takes one deployment
              at a time);
  deliveries: a second project receives signed deliveries at RATE per second (open loop),
              pushes to branches its filter ignores and pings: each is stored, none starts a
              run, and every one carries its own X-GitHub-Delivery;
  traffic:    a client GETs staging's frontend at FRONTEND_RATE per second throughout; any
              answer but a 200, or no answer, is a failed request.

Memory is what the web process and the worker hold in RAM: the worker is its main process and
every descendant running the same interpreter (a forking pool's processes, with `--pool
processes`; git's short-lived subprocesses are not the worker's own memory). The targets count
resident pages once: the physical frames every process maps (/proc/<pid>/pagemap, which needs
root), united, so a page the forked web processes share with gunicorn since the fork, or a
library both web and worker map, counts once. RSS summed counts such a page once per process,
so it overstates; Pss (smaps_rollup) splits it between every process that maps it, this bench's
own Python included, so it drops while the bench runs and moves with whatever else runs. Both
are shown beside it, and per process RSS, Pss and private memory (USS), to see which process
grows. Sampled at the end of the warm-up ("start": one full push -> deploy done, every load
running), every SAMPLE_EVERY seconds, and at the end (the last cycle done, loads running).

At the end it checks nothing was lost: every delivery answered 2xx is stored exactly once and
started nothing; every pushed commit has exactly one run, which succeeded, made a release, and
that release has a succeeded staging deployment.

Before all that, a rough day, as a server that has been up a while has had: ROUGH_DELIVERIES
signed deliveries that start nothing (closed loop over 8 connections), LARGE_BODIES bodies near
the 25 MB cap, ROUGH_RUNS runs of a third project one after another, and ROUGH_VIEWERS browsers
watching the running run's live log over WebSocket meanwhile. DOCKYARD_SOAK_ROUGH_DAY=0 skips it.

Targets (issue "Soak"): failed requests 0; lost records 0; memory (web + worker) grows by
less than 10% from start to end; web + worker stay under 300 MB (peak). Run with
`make bench-soak`; DOCKYARD_SOAK_SECONDS (default 180) and DOCKYARD_SOAK_RATE (default 20)
tune it. Every wait has a deadline: it stops by itself.
"""

import asyncio
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.local_forge import commit_all, git, signed_push  # noqa: E402
from pipelines.models import PipelineRun  # noqa: E402
from pipelines.states import RUN_FINAL_STATES  # noqa: E402
from projects.models import Project  # noqa: E402
from projects.services import project_create  # noqa: E402
from releases.models import Deployment, Environment, Release  # noqa: E402
from releases.states import DEPLOYMENT_FINAL_STATES  # noqa: E402
from webhooks.models import Delivery  # noqa: E402
from webhooks.signatures import github_signature  # noqa: E402

SERVER = os.environ.get("DOCKYARD_BENCH_SERVER", "http://127.0.0.1:8000")
SECONDS = float(os.environ.get("DOCKYARD_SOAK_SECONDS", "180"))
RATE = float(os.environ.get("DOCKYARD_SOAK_RATE", "20"))
PUSH_EVERY = float(os.environ.get("DOCKYARD_SOAK_PUSH_SECONDS", "20"))
FRONTEND_RATE = 50.0
SAMPLE_EVERY = 10.0
CONNECTIONS = 8
# Deadlines: a run that takes longer is a failure, not a reason to wait for ever.
RUN_DEADLINE = 300.0
DEPLOY_DEADLINE = 120.0
GROWTH_TARGET = 10.0  # percent, start -> end
ROUGH_DAY = os.environ.get("DOCKYARD_SOAK_ROUGH_DAY", "1") != "0"
ROUGH_DELIVERIES = 10_000
LARGE_BODIES = 5
LARGE_BODY_BYTES = 24 * 1024 * 1024
ROUGH_RUNS = 100
ROUGH_VIEWERS = 10
TOTAL_TARGET_MB = 300.0
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
"""


# /proc/<pid>/pagemap: bit 63 says the page is in memory, bits 0-54 are its frame number
# (which reads as 0 unless the reader has CAP_SYS_ADMIN).
PRESENT = 1 << 63
FRAME = (1 << 55) - 1
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Proc:
    pid: int
    role: str
    rss_kib: int
    pss_kib: int
    private_kib: int  # USS: pages no other process maps


@dataclass
class Sample:
    at: float
    procs: list[Proc]
    # Resident memory of the web, of the worker's processes, and of both: every physical page
    # one of them maps, counted once (Pss summed when frame numbers are not readable).
    web_mb: float
    worker_mb: float
    total_mb: float

    @property
    def pss_mb(self) -> float:
        return sum(proc.pss_kib for proc in self.procs) / 1024

    @property
    def rss_mb(self) -> float:
        return sum(proc.rss_kib for proc in self.procs) / 1024


def smaps_kib(pid: int) -> tuple[int, int, int]:
    """(Rss, Pss, Private) of one process in KiB, from one read of smaps_rollup."""
    values: Counter[str] = Counter()
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            values[name] = int(rest.split()[0])
    return values["Rss"], values["Pss"], values["Private_Clean"] + values["Private_Dirty"]


def resident_frames(pid: int) -> set[int]:
    """The physical frames of every page of `pid` that is in memory."""
    frames: set[int] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            low, high = (int(bound, 16) for bound in line.split()[0].split("-"))
            if low >= 1 << 47:
                continue  # [vsyscall]: not in pagemap
            pagemap.seek(low // 4096 * 8)
            entries = array("Q", pagemap.read((high - low) // 4096 * 8))
            frames.update(entry & FRAME for entry in entries if entry & PRESENT)
    return frames


def process_tree(root: int) -> list[int]:
    """`root` and its descendants that run the same executable (not git, not docker)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses; the fields after it do not.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(stat.parent.name))
    executable = os.readlink(f"/proc/{root}/exe")
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            if os.readlink(f"/proc/{pid}/exe") == executable:
                tree.append(pid)
        except OSError:
            continue
        todo.extend(children[pid])
    return sorted(tree, key=lambda pid: (pid != root, pid))  # the main process first


def measure(role: str, root: int) -> tuple[list[Proc], set[int] | None]:
    """The processes of `role` and the frames they hold together (None: frames unreadable)."""
    procs: list[Proc] = []
    frames: set[int] | None = set()
    for pid in process_tree(root):
        try:
            rss, pss, private = smaps_kib(pid)
            own = resident_frames(pid)
        except (OSError, KeyError):
            continue  # a child that ended between the listing and the read
        procs.append(Proc(pid, role if pid == root else f"{role} child", rss, pss, private))
        if frames is not None and own and own != {0}:
            frames |= own
        else:
            frames = None
    return procs, frames


class MemoryWatch:
    """Samples the web and worker every SAMPLE_EVERY seconds from a thread."""

    def __init__(self) -> None:
        run_dir = Path(settings.DATA_DIR) / "run"
        self.web_pid = int((run_dir / "web.pid").read_text())
        self.worker_pid = int((run_dir / "worker.pid").read_text())
        self.samples: list[Sample] = []
        self.counted = "resident pages, each counted once"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> Sample:
        at = time.monotonic()
        web, web_frames = measure("web", self.web_pid)
        worker, worker_frames = measure("worker", self.worker_pid)
        if not web or not worker:
            raise SystemExit("FAILED: the web or the worker process is gone")
        if web_frames is None or worker_frames is None:
            self.counted = "Pss summed (run as root to count each page once)"
            web_mb = sum(proc.pss_kib for proc in web) / 1024
            worker_mb = sum(proc.pss_kib for proc in worker) / 1024
            total_mb = web_mb + worker_mb
        else:
            web_mb = len(web_frames) * PAGE_KIB / 1024
            worker_mb = len(worker_frames) * PAGE_KIB / 1024
            total_mb = len(web_frames | worker_frames) * PAGE_KIB / 1024
        taken = Sample(at, web + worker, web_mb, worker_mb, total_mb)
        self.samples.append(taken)
        return taken

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_EVERY):
            self.sample()

    def __enter__(self) -> "MemoryWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join()


@dataclass
class Answer:
    delivery_id: str
    sent_at: float
    latency_ms: float
    status: int  # 0: no answer (connection error or timeout)


@dataclass
class DeliveryStream:
    """Signed deliveries that start nothing, RATE a second, open loop, from a thread.

    asyncio and raw HTTP/1.1 over a pool of keep-alive connections, as bench/webhooks.py, so
    the generator costs microseconds a request and a slow answer never delays the next one.
    """

    secret: str
    repo: str
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def payload(self, i: int) -> tuple[str, bytes]:
        if i % 10 == 9:
            ping = {"zen": "Soak.", "repository": {"clone_url": self.repo}}
            return "ping", json.dumps(ping).encode()
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        body: dict[str, object] = {
            # The project builds main only: a push to any other branch is stored and answered
            # "skipped", and starts nothing.
            "ref": f"refs/heads/soak-{i}",
            "before": "0" * 40,
            "after": sha,
            "repository": {"clone_url": self.repo, "full_name": "bench/soak-hooks"},
            "head_commit": {"id": sha, "message": f"soak {i}"},
            "commits": [{"id": sha, "message": f"soak {i}"}],
        }
        return "push", json.dumps(body).encode()

    def __enter__(self) -> "DeliveryStream":
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join()

    async def _run(self) -> None:
        host, port = urlsplit(SERVER).hostname or "127.0.0.1", urlsplit(SERVER).port or 80
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )
        for _ in range(CONNECTIONS):
            idle.put_nowait(None)  # opened on first use
        started = time.monotonic()
        tasks = []
        i = 0
        while not self.stopping.is_set():
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(self._send(i, host, port, idle)))
            i += 1
        await asyncio.gather(*tasks)
        while not idle.empty():
            connection = idle.get_nowait()
            if connection is not None:
                connection[1].close()

    async def _send(
        self,
        i: int,
        host: str,
        port: int,
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None],
    ) -> None:
        event, body = self.payload(i)
        delivery_id, request = _delivery_request(self.secret, event, body, host)
        connection = await idle.get()
        sent = time.monotonic()
        status = 0
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            status = await asyncio.wait_for(_exchange(*connection, request), timeout=10)
        except (OSError, asyncio.IncompleteReadError, ValueError):  # TimeoutError is an OSError
            if connection is not None:
                connection[1].close()
            connection = None
        self.answers.append(Answer(delivery_id, sent, (time.monotonic() - sent) * 1000, status))
        idle.put_nowait(connection)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    status_line = await reader.readline()
    headers = await reader.readuntil(b"\r\n\r\n")
    lengths = [
        int(line.split(b":", 1)[1])
        for line in headers.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    if not lengths:
        raise ValueError("an answer without Content-Length")
    await reader.readexactly(lengths[0])
    return int(status_line.split()[1])


class FrontendTraffic:
    """GETs of one frontend at FRONTEND_RATE a second from a thread; counts what was not a 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests, self.failures = 0, 0
        self.failure_kinds: Counter[str] = Counter()
        self.served = ""
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        connection = http.client.HTTPConnection(
            settings.DOCKYARD_APP_ADDRESS, self.port, timeout=10
        )
        started = time.monotonic()
        while not self.stopping.is_set():
            failure = ""
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode().strip()
                if response.status == 200:
                    self.served = body
                else:
                    failure = f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as error:
                failure = type(error).__name__
                connection.close()
                connection = http.client.HTTPConnection(
                    settings.DOCKYARD_APP_ADDRESS, self.port, timeout=10
                )
            self.requests += 1
            if failure:
                self.failures += 1
                self.failure_kinds[failure] += 1
            self.stopping.wait(max(0.0, started + self.requests / FRONTEND_RATE - time.monotonic()))
        connection.close()

    def __enter__(self) -> "FrontendTraffic":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join()


@dataclass
class Cycle:
    version: str
    sha: str
    run_seconds: float = 0.0
    deploy_seconds: float = 0.0
    run_succeeded: bool = False
    deployed: bool = False
    problem: str = ""


def push_and_deploy(project: Project, repo: Path, version: str) -> Cycle:
    """Commit and push one version, then wait (bounded) for its run and its staging deploy."""
    (repo / "www" / "index.html").write_text(f"{version}\n")
    cycle = Cycle(version, commit_all(repo, version))
    started = time.monotonic()
    run = PipelineRun.objects.get(
        pk=signed_push(server=SERVER, secret=project.webhook_secret, repo=repo, sha=cycle.sha)
    )
    while run.status not in RUN_FINAL_STATES and time.monotonic() < started + RUN_DEADLINE:
        time.sleep(0.1)
        run.refresh_from_db()
    cycle.run_seconds = time.monotonic() - started
    cycle.run_succeeded = run.status == "succeeded"
    if not cycle.run_succeeded:
        cycle.problem = f"run {run.pk} {run.status} {run.failure_reason}".strip()
        return cycle
    deadline = time.monotonic() + DEPLOY_DEADLINE
    deployment = None
    while time.monotonic() < deadline:
        deployment = Deployment.objects.filter(
            release__run=run, environment__name="staging"
        ).first()
        if deployment is not None and deployment.status in DEPLOYMENT_FINAL_STATES:
            break
        time.sleep(0.1)
    cycle.deploy_seconds = time.monotonic() - started
    if deployment is None or deployment.status != "succeeded":
        cycle.problem = f"run {run.pk}: staging deployment {deployment and deployment.status}"
        return cycle
    port = Environment.objects.get(project=project, name="staging").frontend_port
    cycle.deployed = serving(port, version, within=5.0)
    if not cycle.deployed:
        cycle.problem = f"run {run.pk}: staging does not serve {version} after its deployment"
    return cycle


def serving(port: int, version: str, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(settings.DOCKYARD_APP_ADDRESS, port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().read().decode().strip() == version:
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    return False


def make_repository(path: Path, *, app: bool) -> None:
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    if app:
        (path / "www").mkdir()
        shutil.copy("/bin/busybox", path / "busybox")
        (path / "Dockerfile").write_text(DOCKERFILE)
        (path / "dockyard.yml").write_text(SPEC)
        (path / "www" / "healthz").write_text("ok\n")
    else:
        git(path, "commit", "--quiet", "--allow-empty", "-m", "one")


def rough_day(hooks: Project, hooks_repo: Path, workspace: Path) -> None:
    """What a server up for a day has been through, before the soak's first sample."""
    started = time.monotonic()
    stream = DeliveryStream(secret=hooks.webhook_secret, repo=str(hooks_repo))
    statuses = asyncio.run(_deliveries_closed_loop(stream, ROUGH_DELIVERIES))
    large = [_large_delivery(stream, number) for number in range(LARGE_BODIES)]
    repo = workspace / "rough"
    make_repository(repo, app=True)
    (repo / "dockyard.yml").write_text('images:\n  app: {}\ntest:\n  command: ["true"]\n')
    runs_project = project_create(slug=f"{hooks.slug}-rough", repository_url=str(repo))
    viewers = LiveViewers(runs_project)
    with viewers:
        failed = [
            run for run in (_rough_run(runs_project, repo, n) for n in range(ROUGH_RUNS)) if run
        ]
    print(
        f"rough day in {time.monotonic() - started:.0f} s: {ROUGH_DELIVERIES} deliveries "
        f"{dict(statuses)}, {LARGE_BODIES} of {LARGE_BODY_BYTES / 2**20:.0f} MB {large}, "
        f"{ROUGH_RUNS} runs ({len(failed)} not succeeded), {ROUGH_VIEWERS} viewers saw "
        f"{viewers.messages} live messages over {viewers.connections} connections",
        flush=True,
    )
    if any(not 200 <= status < 300 for status in [*statuses, *large]) or failed:
        raise SystemExit(f"FAILED: the rough day: {dict(statuses)} {large} {failed[:3]}")


async def _deliveries_closed_loop(stream: DeliveryStream, count: int) -> Counter[int]:
    host, port = urlsplit(SERVER).hostname or "127.0.0.1", urlsplit(SERVER).port or 80
    indexes = iter(range(count))
    statuses: Counter[int] = Counter()

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for i in indexes:  # shared by every connection: each takes the next
            event, body = stream.payload(i)
            _, request = _delivery_request(stream.secret, event, body, host)
            statuses[await _exchange(reader, writer, request)] += 1
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))
    return statuses


def _large_delivery(stream: DeliveryStream, number: int) -> int:
    event, body = stream.payload(number)
    payload = json.loads(body)
    payload["padding"] = "x" * (LARGE_BODY_BYTES - len(body))
    large = json.dumps(payload).encode()
    host, port = urlsplit(SERVER).hostname or "127.0.0.1", urlsplit(SERVER).port or 80
    _, request = _delivery_request(stream.secret, event, large, host)
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.send(request)
        response = http.client.HTTPResponse(connection.sock)
        response.begin()
        response.read()
        return response.status
    finally:
        connection.close()


def _rough_run(project: Project, repo: Path, number: int) -> str:
    """One push of `project` and its run to the end: "" when it succeeded, else what it did."""
    (repo / "www" / "index.html").write_text(f"rough {number}\n")
    sha = commit_all(repo, f"rough {number}")
    run = PipelineRun.objects.get(
        pk=signed_push(server=SERVER, secret=project.webhook_secret, repo=repo, sha=sha)
    )
    deadline = time.monotonic() + RUN_DEADLINE
    while run.status not in RUN_FINAL_STATES and time.monotonic() < deadline:
        time.sleep(0.05)
        run.refresh_from_db()
    return "" if run.status == "succeeded" else f"run {run.pk} {run.status}"


class LiveViewers:
    """ROUGH_VIEWERS logged-in browsers, each watching the project's newest run's live log
    over WebSocket for a few seconds at a time, then the next newest, until stopped."""

    def __init__(self, project: Project) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        user, _ = get_user_model().objects.get_or_create(username="soak-viewer")
        client = Client(HTTP_HOST=urlsplit(SERVER).netloc)
        client.force_login(user)
        self.cookie = f"sessionid={client.cookies['sessionid'].value}"
        self.project = project
        self.messages = 0
        self.connections = 0
        self.stopping = threading.Event()

    def __enter__(self) -> "LiveViewers":
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    async def _run(self) -> None:
        await asyncio.gather(*(self._viewer() for _ in range(ROUGH_VIEWERS)))

    async def _viewer(self) -> None:
        from websockets.asyncio.client import connect

        origin = f"{urlsplit(SERVER).scheme}://{urlsplit(SERVER).netloc}"
        base = SERVER.replace("http", "ws", 1)
        while not self.stopping.is_set():
            run_id = await asyncio.to_thread(self._newest_run)
            if run_id is None:
                await asyncio.sleep(0.2)
                continue
            try:
                async with connect(
                    f"{base}/ws/runs/{run_id}/",
                    origin=origin,  # type: ignore[arg-type]
                    additional_headers={"Cookie": self.cookie},
                    open_timeout=10,
                ) as socket:
                    self.connections += 1
                    await socket.send(json.dumps({"after": 0}))
                    until = time.monotonic() + 3
                    while time.monotonic() < until:
                        try:
                            await asyncio.wait_for(socket.recv(), timeout=until - time.monotonic())
                        except TimeoutError:
                            break
                        self.messages += 1
            except OSError:
                await asyncio.sleep(0.5)

    def _newest_run(self) -> int | None:
        from django.db import close_old_connections

        close_old_connections()
        run = PipelineRun.objects.filter(project=self.project).order_by("-pk").first()
        return run.pk if run is not None else None


def _delivery_request(secret: str, event: str, body: bytes, host: str) -> tuple[str, bytes]:
    """(delivery id, the whole HTTP/1.1 request) of a signed GitHub delivery."""
    delivery_id = str(uuid.uuid4())
    head = (
        f"POST /webhooks/github/ HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\nUser-Agent: GitHub-Hookshot/soak\r\n"
        f"X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery_id}\r\n"
        f"X-Hub-Signature-256: {github_signature(secret=secret, body=body)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return delivery_id, head + body


def lost_records(
    app: Project, hooks: Project, cycles: list[Cycle], answers: list[Answer]
) -> dict[str, int]:
    """What the database should hold and does not (or holds twice), by kind."""
    accepted = {answer.delivery_id for answer in answers if 200 <= answer.status < 300}
    stored = Counter(Delivery.objects.filter(project=hooks).values_list("delivery_id", flat=True))
    lost = {
        "deliveries missing": sum(1 for delivery_id in accepted if stored[delivery_id] == 0),
        "deliveries doubled": sum(1 for n in stored.values() if n > 1),
        "runs started by deliveries that should start none": PipelineRun.objects.filter(
            project=hooks
        ).count(),
        "pushes without exactly one succeeded run": 0,
        "runs without a release": 0,
        "releases without a succeeded staging deployment": 0,
    }
    for cycle in cycles:
        runs = list(PipelineRun.objects.filter(project=app, commit_sha=cycle.sha))
        if len(runs) != 1 or runs[0].status != "succeeded":
            lost["pushes without exactly one succeeded run"] += 1
            continue
        release = Release.objects.filter(run=runs[0]).first()
        if release is None:
            lost["runs without a release"] += 1
            continue
        deployed = Deployment.objects.filter(
            release=release, environment__name="staging", status="succeeded"
        ).count()
        if deployed != 1:
            lost["releases without a succeeded staging deployment"] += 1
    return lost


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def growth(start: float, end: float) -> float:
    return (end - start) / start * 100


def print_memory(counted: str, samples: list[Sample]) -> None:
    start, end = samples[0], samples[-1]
    print(f"memory, MB ({counted}):")
    print(f"{'':34}{'start':>8}{'end':>8}{'growth':>9}{'peak':>8}")
    rows: tuple[tuple[str, Callable[[Sample], float]], ...] = (
        ("web (gunicorn + uvicorn processes)", lambda sample: sample.web_mb),
        ("worker (main + pool children)", lambda sample: sample.worker_mb),
        ("web + worker", lambda sample: sample.total_mb),
        ("web + worker, Pss summed", lambda sample: sample.pss_mb),
        ("web + worker, RSS summed", lambda sample: sample.rss_mb),
    )
    for label, value in rows:
        first, last = value(start), value(end)
        peak = max(value(sample) for sample in samples)
        print(f"{label:34}{first:8.1f}{last:8.1f}{growth(first, last):+8.1f}%{peak:8.1f}")
    print(f"{'per process, MB':26}{'pid':>8}{'RSS':>8}{'Pss':>8}{'private':>9}")
    for name, sample in (("start", start), ("end", end)):
        for proc in sample.procs:
            print(
                f"{name + ' ' + proc.role:26}{proc.pid:8}{proc.rss_kib / 1024:8.1f}"
                f"{proc.pss_kib / 1024:8.1f}{proc.private_kib / 1024:9.1f}"
            )
    print(
        "web + worker at each sample (s: MB): "
        + ", ".join(f"{sample.at - start.at:.0f}: {sample.total_mb:.0f}" for sample in samples)
    )


@dataclass
class Soak:
    """What one soak did and saw."""

    cycles: list[Cycle]
    answers: list[Answer]
    traffic: FrontendTraffic
    watch: MemoryWatch
    lost: dict[str, int]


def soak(app: Project, app_repo: Path, hooks: Project, hooks_repo: Path) -> Soak:
    watch = MemoryWatch()
    cycles: list[Cycle] = []
    print(
        f"soak: {SECONDS:.0f} s after a warm-up; a push every {PUSH_EVERY:.0f} s, "
        f"{RATE:.0f} deliveries/s, {FRONTEND_RATE:.0f} GET/s on staging; "
        f"web pid {watch.web_pid}, worker pid {watch.worker_pid}",
        flush=True,
    )
    with DeliveryStream(secret=hooks.webhook_secret, repo=str(hooks_repo)) as stream:
        # Warm-up: one full push -> deploy with deliveries flowing, then traffic on staging,
        # so that every code path the soak uses has run once before the first sample.
        cycles.append(push_and_deploy(app, app_repo, "v0"))
        if cycles[0].problem:
            raise SystemExit(f"FAILED: the warm-up cycle: {cycles[0].problem}")
        staging = Environment.objects.get(project=app, name="staging")
        with FrontendTraffic(staging.frontend_port) as traffic:
            time.sleep(5)
            start = watch.sample()
            print(f"warm-up done; web + worker {start.total_mb:.1f} MB", flush=True)
            with watch:
                deadline = start.at + SECONDS
                next_push = start.at
                while time.monotonic() < deadline:
                    time.sleep(max(0.0, min(next_push, deadline) - time.monotonic()))
                    if time.monotonic() >= deadline:
                        break
                    cycle = push_and_deploy(app, app_repo, f"v{len(cycles)}")
                    cycles.append(cycle)
                    print(
                        f"  {cycle.version}: run done {cycle.run_seconds:.1f} s after the push, "
                        f"staging deployment {cycle.deploy_seconds:.1f} s {cycle.problem}",
                        flush=True,
                    )
                    next_push = max(next_push + PUSH_EVERY, time.monotonic())
            # The end: the last cycle done, every load still running, as at the start.
            watch.sample()
    return Soak(
        cycles, stream.answers, traffic, watch, lost_records(app, hooks, cycles, stream.answers)
    )


def report(result: Soak) -> list[str]:
    """Print every number, then the table of targets; returns the targets missed."""
    samples = result.watch.samples  # the start, every SAMPLE_EVERY seconds, the end
    start, end = samples[0], samples[-1]
    seconds = end.at - start.at
    answers, traffic = result.answers, result.traffic
    in_soak = [answer for answer in answers if start.at <= answer.sent_at < end.at]
    statuses = Counter(answer.status for answer in answers)
    failed_deliveries = sum(1 for answer in answers if answer.status not in (200, 202))
    latencies = [answer.latency_ms for answer in in_soak if answer.status]
    held = sum(1 for answer in in_soak if answer.status in (200, 202)) / seconds
    soak_cycles = result.cycles[1:]
    runs_done = sum(1 for cycle in soak_cycles if cycle.run_succeeded)
    deploys_done = sum(1 for cycle in soak_cycles if cycle.deployed)
    failed_requests = traffic.failures + failed_deliveries
    lost = sum(result.lost.values())
    memory_growth = growth(start.total_mb, end.total_mb)
    peak = max(sample.total_mb for sample in samples)

    print()
    print(f"soak: {seconds:.0f} s (plus the warm-up), loopback, {os.cpu_count()} CPUs")
    print(
        f"deliveries: {len(answers)} sent in all, statuses {dict(sorted(statuses.items()))} "
        "(0: no answer)"
    )
    print(
        f"frontend: {traffic.requests} GETs of staging, failed {traffic.failures} "
        f"{dict(traffic.failure_kinds) or ''}"
    )
    print(
        "cycles (s from the push to the run's end / the staging deployment's end): "
        + ", ".join(
            f"{c.version} {c.run_seconds:.1f}/{c.deploy_seconds:.1f}" for c in result.cycles
        )
    )
    for cycle in result.cycles:
        if cycle.problem:
            print(f"  {cycle.version}: {cycle.problem}")
    print("lost records: " + ", ".join(f"{name} {n}" for name, n in result.lost.items()))
    print(f"lost records: {lost}")
    print_memory(result.watch.counted, samples)
    print()

    checks = [
        (
            "deliveries/s held",
            f"{held:.1f} of {RATE:.0f}",
            f">= {RATE * 0.95:.1f}",
            held >= RATE * 0.95,
        ),
        (
            "delivery p50 / p99 (ms)",
            f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f}",
            "",
            None,
        ),
        (
            "runs completed",
            f"{runs_done} of {len(soak_cycles)}",
            "all",
            runs_done == len(soak_cycles),
        ),
        (
            "deploys completed",
            f"{deploys_done} of {len(soak_cycles)}",
            "all",
            bool(soak_cycles) and deploys_done == len(soak_cycles),
        ),
        (
            "failed requests",
            f"{failed_requests} of {traffic.requests + len(answers)}",
            "0",
            failed_requests == 0,
        ),
        ("lost records", str(lost), "0", lost == 0),
        (
            "web + worker growth",
            f"{start.total_mb:.1f} -> {end.total_mb:.1f} MB, {memory_growth:+.1f}%",
            f"< {GROWTH_TARGET:.0f}%",
            memory_growth < GROWTH_TARGET,
        ),
        (
            "web + worker peak",
            f"{peak:.1f} MB",
            f"< {TOTAL_TARGET_MB:.0f} MB",
            peak < TOTAL_TARGET_MB,
        ),
    ]
    print(f"{'':26}{'measured':>34}{'target':>12}")
    for label, measured, target, passed in checks:
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        print(f"{label:26}{measured:>34}{target:>12}  {verdict}")
    return [label for label, _, _, passed in checks if passed is False]


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="dockyard-bench-soak-"))
    nonce = uuid.uuid4().hex[:8]
    app_repo, hooks_repo = workspace / "app", workspace / "hooks"
    make_repository(app_repo, app=True)
    make_repository(hooks_repo, app=False)
    app = project_create(slug=f"bench-soak-{nonce}", repository_url=str(app_repo))
    hooks = project_create(
        slug=f"bench-soak-hooks-{nonce}", repository_url=str(hooks_repo), branch_filter="main"
    )
    if ROUGH_DAY:
        rough_day(hooks, hooks_repo, workspace)
    result = soak(app, app_repo, hooks, hooks_repo)
    shutil.rmtree(workspace, ignore_errors=True)
    missed = report(result)
    if missed:
        raise SystemExit("FAILED: " + ", ".join(missed))


if __name__ == "__main__":
    main()
