"""Signed deliveries from a loopback load generator against the server `make up` runs.

Paced: sends DELIVERIES signed GitHub deliveries at RATE per second (open loop: each request
leaves at its planned time, however slow the answers are), a tenth of them redelivered copies.
Closed loop: then as fast as the server answers, over 8 and then 32 keep-alive connections,
each sending its next delivery when the last is answered (CLOSED_DELIVERIES each). Prints
throughput and the p50/p99 latency to the answer, and side by side the same load of requests
to the server's health endpoint (Django's whole request handler and a database and Redis
round trip; the webhook endpoint skips that handler). Beside each load, the machine's CPU time
a request (the load generator's left out) and how busy its cores were: the ceiling that CPU
cost sets on this machine, printed for the closed loops. It then checks what the server kept:
every distinct delivery stored exactly once, every run-making delivery made exactly one run, no
redelivery made anything.

Targets: p99 under 50 ms at 200 deliveries per second (paced); at least 500 deliveries a second
with p99 under 50 ms over 8 connections (closed loop, PostgreSQL); nothing lost or doubled.
Run with `make bench-webhooks`; bounded by the delivery counts and stops by itself.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from config.celery import app as celery_app  # noqa: E402
from pipelines.models import PipelineRun  # noqa: E402
from projects.services import project_create  # noqa: E402
from webhooks.models import Delivery  # noqa: E402
from webhooks.signatures import github_signature  # noqa: E402

SERVER = os.environ.get("DOCKYARD_BENCH_SERVER", "http://127.0.0.1:8000")
RATE = float(os.environ.get("BENCH_RATE", "200"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "2000"))
CONNECTIONS = 32
CLOSED_DELIVERIES = int(os.environ.get("BENCH_CLOSED_DELIVERIES", "3000"))
CLOSED_CONNECTIONS = (8, 32)
# One delivery in RUN_EVERY makes a run; the rest are pushes marked [skip ci] and pings, which
# are stored and answered but start nothing (a build per delivery would measure the worker,
# not the webhook).
RUN_EVERY = int(os.environ.get("BENCH_RUN_EVERY", "20"))
REDELIVER_EVERY = 10


def payload_for(i: int, repo: str, sha: str) -> tuple[str, bytes]:
    if i % 7 == 3:
        return "ping", json.dumps(
            {"zen": "Keep it logically awesome.", "repository": {"clone_url": repo}}
        ).encode()
    makes_run = i % RUN_EVERY == 0
    message = "bench change" if makes_run else "bench change [skip ci]"
    body = {
        # Run-making pushes go to one branch, as a busy team's would: each new one cancels the
        # previous run of that branch, so the worker is not flooded with builds nobody wants.
        "ref": "refs/heads/main" if makes_run else f"refs/heads/bench-{i}",
        "before": "0" * 40,
        "after": sha,
        "repository": {"clone_url": repo, "full_name": "bench/repo"},
        "head_commit": {"id": sha, "message": message},
        "commits": [{"id": sha, "message": message}],
    }
    return "push", json.dumps(body).encode()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-webhooks-"))
    repo = workdir / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@dockyard.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    project = project_create(slug=f"bench-hooks-{uuid.uuid4().hex[:8]}", repository_url=str(repo))

    originals: list[tuple[str, bytes, dict[str, str]]] = []

    def deliveries(count: int) -> list[tuple[str, bytes, dict[str, str]]]:
        planned: list[tuple[str, bytes, dict[str, str]]] = []
        for i in range(count):
            if i % REDELIVER_EVERY == REDELIVER_EVERY - 1 and originals:
                planned.append(originals[-1])  # a redelivery: the very same request
                continue
            event, body = payload_for(len(originals), str(repo), sha)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/bench",
                "Connection": "keep-alive",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": github_signature(secret=project.webhook_secret, body=body),
            }
            request = (f"{SERVER}/webhooks/github/", body, headers)
            originals.append(request)
            planned.append(request)
        return planned

    paced = deliveries(DELIVERIES)
    closed = {connections: deliveries(CLOSED_DELIVERIES) for connections in CLOSED_CONNECTIONS}
    health: list[tuple[str, bytes, dict[str, str]]] = [(f"{SERVER}/healthz", b"", {})]

    # Workers run on other hosts in production; on this 2-core machine a worker building the
    # queued runs would measure the builds, not the webhook. It stops taking builds while the
    # load runs and takes them up again after (they wait in the queue: nothing is lost).
    celery_app.control.cancel_consumer("builds", reply=True)
    results: list[tuple[str, LoadResult]] = []
    try:
        # Every web process's first requests open its database connections and fill its
        # caches: not what a server that has been up for a while costs.
        run_load(health * 400, method="GET", closed_loop=8)
        results.append(("GET /healthz, paced", run_load(health * DELIVERIES, method="GET")))
        hooks = run_load(paced, method="POST")
        results.append(("POST webhook, paced", hooks))
        for connections, planned in closed.items():
            floor = run_load(health * len(planned), method="GET", closed_loop=connections)
            results.append((f"GET /healthz, {connections} conn", floor))
            results.append(
                (
                    f"POST webhook, {connections} conn",
                    run_load(planned, method="POST", closed_loop=connections),
                )
            )
    finally:
        celery_app.control.add_consumer("builds", reply=True)

    print(f"database: {connection.vendor}")
    print(
        f"paced: {DELIVERIES} requests at {RATE:.0f}/s planned over {CONNECTIONS} connections; "
        f"closed loop: {CLOSED_DELIVERIES} over {' and '.join(map(str, CLOSED_CONNECTIONS))}"
    )
    print("(the worker took no builds during the load; the queued runs are built afterwards)")
    print(
        f"{'':26}{'sent/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU ms':>8}{'busy':>6}  statuses"
    )
    for label, result in results:
        latencies = result.latencies
        print(
            f"{label:26}{len(latencies) / result.seconds:8.0f}{percentile(latencies, 50):9.1f}"
            f"{percentile(latencies, 99):9.1f}{max(latencies):9.1f}"
            f"{result.cpu_ms_per_request:8.1f}{result.busy_share:6.0%}  {dict(result.statuses)}"
        )
        if result.run_making:
            # One in RUN_EVERY: more than the 1 in 100 a p99 looks at, so the p99 is theirs.
            others = sorted(latencies)
            for latency in result.run_making:
                others.remove(latency)
            kinds = (
                (f"  run-making (1 in {RUN_EVERY})", result.run_making),
                ("  the rest", others),
            )
            for kind, values in kinds:
                print(
                    f"{kind:26}{'':8}{percentile(values, 50):9.1f}"
                    f"{percentile(values, 99):9.1f}{max(values):9.1f}  {len(values)} answers"
                )
    print(
        "CPU ms: the machine's CPU time a request (server, database, Redis; the load generator "
        f"left out); busy: of its {CORES} cores"
    )
    for label, result in results:
        if label.startswith("POST webhook, ") and "conn" in label:
            print(
                f"{label}: {CORES} cores at {result.cpu_ms_per_request:.1f} ms a delivery make "
                f"a ceiling of {CORES * 1000 / result.cpu_ms_per_request:.0f}/s "
                f"(the load generator took {result.generator_cpu_seconds:.1f} s of CPU)"
            )
    print("targets: webhook p99 < 50 ms at 200/s paced; >= 500/s with p99 < 50 ms over 8 conn")

    stored = Delivery.objects.filter(project=project)
    distinct = len(originals)
    run_making = sum(
        1
        for _, body, headers in originals
        if headers["X-GitHub-Event"] == "push" and b"[skip ci]" not in body
    )
    runs = PipelineRun.objects.filter(project=project).count()
    doubled = (
        stored.values("delivery_id")
        .annotate(n=django.db.models.Count("id"))
        .filter(n__gt=1)
        .count()
    )
    print(f"stored deliveries: {stored.count()} of {distinct} distinct (doubled: {doubled})")
    print(f"runs: {runs} for {run_making} run-making deliveries")
    lost = distinct - stored.count()
    if lost or doubled or runs != run_making:
        raise SystemExit("FAILED: a delivery was lost or doubled")
    print("nothing lost, nothing doubled")


@dataclass(frozen=True)
class LoadResult:
    latencies: list[float]  # ms, of each answer
    statuses: Counter[int]
    seconds: float
    run_making: list[float]  # ms, of each answer to a run-making delivery
    # CPU seconds the machine's cores were busy meanwhile, all processes (the server, its
    # database, Redis) but the load generator, whose own are apart.
    cpu_seconds: float
    generator_cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / len(self.latencies)

    @property
    def busy_share(self) -> float:
        """Of all the machine's cores, how busy they were (the load generator left out)."""
        return self.cpu_seconds / (self.seconds * CORES)


CORES = os.cpu_count() or 1


def cpu_busy_seconds() -> float:
    """CPU seconds this machine's cores have spent busy since it booted (/proc/stat)."""
    first_line = Path("/proc/stat").read_text().partition("\n")[0]
    # user nice system idle iowait irq softirq steal (guest time is inside user's)
    ticks = [int(field) for field in first_line.split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def run_load(
    planned: list[tuple[str, bytes, dict[str, str]]], *, method: str, closed_loop: int = 0
) -> LoadResult:
    """Send every request over a pool of keep-alive connections: each at its planned time
    (paced), or with `closed_loop` connections each sending its next as soon as the last is
    answered.

    asyncio and raw HTTP/1.1, so that the generator costs microseconds a request and what is
    measured is the server, not a client library fighting for the GIL.
    """
    busy_before, own_before = cpu_busy_seconds(), time.process_time()
    latencies, statuses, seconds, run_making = asyncio.run(_load(planned, method, closed_loop))
    generator = time.process_time() - own_before
    return LoadResult(
        latencies=latencies,
        statuses=statuses,
        seconds=seconds,
        run_making=run_making,
        cpu_seconds=max(0.0, cpu_busy_seconds() - busy_before - generator),
        generator_cpu_seconds=generator,
    )


async def _load(
    planned: list[tuple[str, bytes, dict[str, str]]], method: str, closed_loop: int
) -> tuple[list[float], Counter[int], float, list[float]]:
    latencies: list[float] = []
    starting_runs: list[float] = []
    statuses: Counter[int] = Counter()
    host, port = urlsplit(SERVER).hostname, urlsplit(SERVER).port or 80
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(closed_loop or CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection(host, port))
    loop = asyncio.get_running_loop()
    # Paced requests are planned from a moment just ahead; a closed loop starts at once.
    start = loop.time() + (0 if closed_loop else 0.2)

    async def send_one(index: int) -> None:
        url, body, headers = planned[index]
        if not closed_loop:
            await asyncio.sleep(max(0.0, start + index / RATE - loop.time()))
        reader, writer = await idle.get()
        head = f"{method} {urlsplit(url).path} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        sent = loop.time()
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        response_headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in response_headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        latency = (loop.time() - sent) * 1000
        latencies.append(latency)
        if headers.get("X-GitHub-Event") == "push" and b"[skip ci]" not in body:
            starting_runs.append(latency)
        statuses[int(status_line.split()[1])] += 1
        idle.put_nowait((reader, writer))

    await asyncio.gather(*(send_one(index) for index in range(len(planned))))
    elapsed = loop.time() - start
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    return latencies, statuses, elapsed, starting_runs


def percentile(values: list[float], pct: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
        if pct < 100
        else max(values)
    )


if __name__ == "__main__":
    main()
