"""The web server's processes share what Dockyard loaded: scripts/web.sh forks them from one
process that imported every view and compiled every template (config/asgi.py), so each holds
little of its own. When uvicorn started each process fresh, nearly all of a process's memory
was its own (92 of 119 MB after bench/soak.py's rough day). And a webhook body near its 25 MB
cap leaves the process with its request."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.factories import github_push_body, make_project
from tests.operations.fault_stack import FaultStack
from webhooks.models import Delivery

# Committed data: the web server is another process.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path / "stack", **getattr(request, "param", {}))
    stack.start_redis()
    stack.start_web()
    yield stack
    stack.close()


def kilobytes(pid: int, *fields: str) -> int:
    """The sum of `fields` in /proc/<pid>/smaps_rollup."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            total += int(rest.split()[0])
    return total


def child_pids(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_each_web_process_keeps_most_of_its_memory_shared_with_the_others(
    web: FaultStack,
) -> None:
    for path in ("/healthz", "/accounts/login/", "/api/v1/schema/"):
        assert requests.get(f"{web.url}{path}", timeout=30).ok, path
    assert web.web is not None
    parent = web.web.popen.pid
    # The server answers once its first process is up; gunicorn forks the next a moment later.
    deadline = time.monotonic() + 30
    while len(children := child_pids(parent)) < 2:  # scripts/web.sh starts two by default
        assert time.monotonic() < deadline, f"web processes: {children}; see {web.web.log}"
        time.sleep(0.1)
    for pid in children:
        rss = kilobytes(pid, "Rss")
        private = kilobytes(pid, "Private_Clean", "Private_Dirty")
        assert private < rss / 2, f"web process {pid}: {private} kB of its {rss} kB its own"


LARGE_BODY_BYTES = 20 * 2**20


@pytest.mark.parametrize("web", [{"DOCKYARD_WEB_WORKERS": "1"}], indirect=True)
def test_a_web_process_does_not_keep_large_webhook_bodies_after_their_requests(
    web: FaultStack,
) -> None:
    # Pushes to a branch the project's filter ignores: stored whole, starting nothing.
    project = make_project(repository_url="https://github.com/acme/big.git", branch_filter="main")

    def deliver(padding: int) -> None:
        payload = json.loads(github_push_body(clone_url=project.repository_url, sha="a" * 40))
        payload.update(ref="refs/heads/elsewhere", padding="x" * padding)
        web.deliver(project, json.dumps(payload).encode())

    for _ in range(3):  # what every delivery loads and keeps, before counting
        deliver(0)
    assert web.web is not None
    (process,) = child_pids(web.web.popen.pid)
    before = kilobytes(process, "Private_Clean", "Private_Dirty")
    for _ in range(3):
        deliver(LARGE_BODY_BYTES)
    kept = kilobytes(process, "Private_Clean", "Private_Dirty") - before
    assert Delivery.objects.filter(project=project).count() == 6
    assert kept < LARGE_BODY_BYTES / 2 / 1024, f"{kept} kB more after three 20 MB deliveries"
