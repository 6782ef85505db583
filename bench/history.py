"""Flat with history: the pages and chores that run all day, timed on 5,000 runs and again on
50,000 (with five stages and two webhook deliveries each), side by side.

Times `/metrics`, the dashboard, a run's page, the runs list and one reaper pass (with the
slowest query it made), each the median of several tries in this process (Django's test
client: no network, no web server, only Dockyard's own work and the database), and counts each
one's queries. Targets: every figure under 100 ms, the reaper's queries under 5 ms each, and
the same query counts at both sizes: nothing grows with history.

Run with `make bench-history`: its own PostgreSQL database (dockyard_history), emptied and
loaded again each time (50,000 runs take two or three minutes to load).
"""

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from builds.models import CacheSource, LayerBuild, LayerRole  # noqa: E402
from operations.reaper import lost_work_reap  # noqa: E402
from pipelines.models import LogChunk, PipelineRun, RunEvent, Stage  # noqa: E402
from pipelines.states import STAGE_ORDER, RunStatus, StageStatus  # noqa: E402
from projects.models import Project  # noqa: E402
from projects.services import project_create  # noqa: E402
from webhooks.models import Delivery  # noqa: E402

SIZES = (5_000, 50_000)
PROJECTS = 20
TRIES = 7
BATCH = 2_000
TARGET_MS = 100.0
REAPER_QUERY_TARGET_MS = 5.0
# A push delivery's body as GitHub sends it is a few kilobytes.
DELIVERY_BODY = b'{"ref": "refs/heads/main", "after": "' + b"e" * 40 + b'"' + b" " * 3000 + b"}"


@dataclass(frozen=True)
class Timing:
    median_ms: float
    queries: int
    slowest_query_ms: float


def main() -> None:
    call_command("migrate", verbosity=0)
    # From empty each time: the first figures are for 5,000 runs, not what the last run left.
    call_command("flush", interactive=False, verbosity=0)
    user = _bench_user()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    results: dict[int, dict[str, Timing]] = {}
    for size in SIZES:
        _history_grow_to(size)
        run = PipelineRun.objects.select_related("project").order_by("-id").first()
        assert run is not None
        run_page = run.get_absolute_url()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        pages = _pages(client, run_page)
        results[size] = {name: _timed(action) for name, action in pages.items()}
    _report(results)


def _pages(client: Client, run_page: str) -> dict[str, Callable[[], object]]:
    return {
        "/metrics": lambda: _get(client, "/metrics"),
        "dashboard": lambda: _get(client, "/"),
        "run page": lambda: _get(client, run_page),
        "runs list": lambda: _get(client, "/runs/"),
        "runs list, page 50": lambda: _get(client, "/runs/?page=50"),
        "reaper pass": lost_work_reap,
    }


def _get(client: Client, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} answered {response.status_code}")


def _timed(action: Callable[[], object]) -> Timing:
    action()  # warm: templates compiled, connection open
    times: list[float] = []
    queries = 0
    slowest = 0.0
    for _ in range(TRIES):
        with _queries_observed() as observed:
            started = time.perf_counter()
            action()
            times.append((time.perf_counter() - started) * 1000)
        queries = len(observed)
        slowest = max(slowest, *observed, 0.0)
    return Timing(statistics.median(times), queries, slowest)


@contextmanager
def _queries_observed() -> Iterator[list[float]]:
    durations: list[float] = []

    def observe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            durations.append((time.perf_counter() - started) * 1000)

    with connection.execute_wrapper(observe):
        yield durations


def _report(results: dict[int, dict[str, Timing]]) -> None:
    small, large = SIZES
    print()
    print(f"{'':24}{small:>10,} runs{'':14}{large:>10,} runs")
    columns = f"{'ms':>8} {'queries':>8} {'slowest':>8}"
    print(f"{'':24}{columns}   {columns}")
    failures: list[str] = []
    for name in results[small]:
        a, b = results[small][name], results[large][name]
        print(
            f"{name:24}{a.median_ms:8.1f} {a.queries:8d} {a.slowest_query_ms:8.2f}"
            f"   {b.median_ms:8.1f} {b.queries:8d} {b.slowest_query_ms:8.2f}"
        )
        if b.median_ms > TARGET_MS:
            failures.append(f"{name} takes {b.median_ms:.0f} ms on {large:,} runs")
        if b.queries != a.queries:
            failures.append(
                f"{name} makes {a.queries} queries on {small:,} runs, {b.queries} on {large:,}"
            )
        if name == "reaper pass" and b.slowest_query_ms > REAPER_QUERY_TARGET_MS:
            failures.append(f"the reaper's slowest query takes {b.slowest_query_ms:.1f} ms")
    print()
    print(
        f"targets: each under {TARGET_MS:g} ms, the reaper's queries under "
        f"{REAPER_QUERY_TARGET_MS:g} ms, the same query counts at both sizes"
    )
    print("missed: " + "; ".join(failures) if failures else "all met")


def _bench_user() -> Any:
    user, _ = get_user_model().objects.get_or_create(
        username="history-bench", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _history_grow_to(size: int) -> None:
    """Add runs (spread over the last 90 days, oldest first) until there are `size`."""
    projects = _projects()
    have = PipelineRun.objects.count()
    if have >= size:
        return
    print(f"loading runs {have + 1:,} to {size:,} ...", flush=True)
    now = timezone.now()
    span = timedelta(days=90)
    next_number = {
        project.pk: (project.runs.order_by("-number").values_list("number", flat=True).first() or 0)
        for project in projects
    }
    for start in range(have, size, BATCH):
        count = min(BATCH, size - start)
        with transaction.atomic():
            runs = []
            for index in range(start, start + count):
                project = projects[index % PROJECTS]
                next_number[project.pk] += 1
                failed = index % 7 == 0
                runs.append(
                    PipelineRun(
                        project=project,
                        number=next_number[project.pk],
                        ref="refs/heads/main" if index % 3 else f"refs/heads/feature-{index % 40}",
                        commit_sha=f"{index:040x}",
                        commit_message=f"change {index}",
                        trigger="push",
                        status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
                        failed_stage="test" if failed else "",
                    )
                )
            PipelineRun.objects.bulk_create(runs)
            _history_of_runs_add(runs, now=now, span=span, size=size)


def _history_of_runs_add(runs: list[PipelineRun], *, now: Any, span: timedelta, size: int) -> None:
    stages, chunks, events, deliveries, layers = [], [], [], [], []
    for run in runs:
        # Oldest first: run i of `size` was made at now - span * (1 - i / size).
        created = now - span * (1 - run.pk / (size + 1))
        run.created_at = created
        run.started_at = created + timedelta(seconds=2)
        run.finished_at = created + timedelta(seconds=60)
        for position, name in enumerate(STAGE_ORDER):
            failed = run.status == RunStatus.FAILED and name == "test"
            after_failure = run.status == RunStatus.FAILED and position > STAGE_ORDER.index("test")
            began = created + timedelta(seconds=2 + position * 10)
            stages.append(
                Stage(
                    run=run,
                    name=name,
                    position=position,
                    status=(
                        StageStatus.SKIPPED
                        if after_failure
                        else StageStatus.FAILED
                        if failed
                        else StageStatus.SUCCEEDED
                    ),
                    attempts=1,
                    started_at=None if after_failure else began,
                    finished_at=None if after_failure else began + timedelta(seconds=9),
                )
            )
        events.append(RunEvent(run=run, from_status="queued", to_status="running"))
        events.append(RunEvent(run=run, from_status="running", to_status=run.status))
        for number in range(2):
            deliveries.append(
                Delivery(
                    forge="github",
                    delivery_id=f"history-{run.pk}-{number}",
                    event="push",
                    project_id=run.project_id,
                    headers={"X-GitHub-Event": "push"},
                    body=DELIVERY_BODY,
                    status_code=202,
                    outcome="run started" if number == 0 else "a redelivery: nothing new",
                    run=run if number == 0 else None,
                    acted_at=created,
                )
            )
        layers.append(
            LayerBuild(
                run=run,
                name="base",
                position=0,
                role=LayerRole.BASE,
                source=CacheSource.REGISTRY,
                image_id="sha256:" + "b" * 64,
                duration_seconds=0.1,
                size_bytes=4_000_000,
            )
        )
    PipelineRun.objects.bulk_update(runs, ["created_at", "started_at", "finished_at"])
    Stage.objects.bulk_create(stages)
    for stage in stages[:: len(STAGE_ORDER)]:
        chunks.append(LogChunk(run_id=stage.run_id, stage=stage, seq=stage.pk, text="ok\n"))
    LogChunk.objects.bulk_create(chunks)
    RunEvent.objects.bulk_create(events)
    # `at` is set on insert; history happened when its run did (the reaper looks at the
    # last day's events only).
    for event in events:
        at = event.run.started_at if event.to_status == "running" else event.run.finished_at
        assert at is not None
        event.at = at
    RunEvent.objects.bulk_update(events, ["at"])
    Delivery.objects.bulk_create(deliveries)
    LayerBuild.objects.bulk_create(layers)
    for layer in layers:
        layer.created_at = layer.run.created_at
    LayerBuild.objects.bulk_update(layers, ["created_at"])
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(received_at=F("acted_at"))


def _projects() -> list[Project]:
    have = list(Project.objects.filter(slug__startswith="history-").order_by("pk"))
    for index in range(len(have), PROJECTS):
        have.append(
            project_create(
                slug=f"history-{index:02d}",
                repository_url=f"https://github.com/acme/history-{index:02d}.git",
                webhook_secret="history-bench-secret",
            )
        )
    return have


if __name__ == "__main__":
    main()
