"""The live run socket: backlog then live chunks, no gaps, no duplicates, logged-in users only."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from pipelines.live_updates import run_event_publish
from pipelines.models import PipelineRun
from pipelines.selectors import run_log_after
from pipelines.services import do_run_transition
from pipelines.stage_log import StageLog
from tests.factories import make_project, make_run
from web.consumers import RunLogConsumer

# The consumer reads the database from another thread: the test's data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run() -> PipelineRun:
    # Made directly, with no task sent: a worker of the suite must not pick it up and change
    # it under the test's feet.
    return make_run(make_project())


@pytest.fixture
def ada() -> User:
    return User.objects.create_user("ada")


def log(run: PipelineRun, *lines: str) -> None:
    writer = StageLog(run.stages.get(name="checkout"))
    for line in lines:
        writer.line(line)
        writer.flush()


def browser(run: PipelineRun, user: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(RunLogConsumer.as_asgi(), f"/ws/runs/{run.pk}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"run_id": run.pk}}
    return communicator


def in_one_event_loop(scenario: Callable[[], Awaitable[None]]) -> None:
    """A communicator lives in one event loop; each test runs its whole scenario in one."""
    async_to_sync(scenario)()


async def logs_until_status(socket: WebsocketCommunicator) -> list[tuple[int, str]]:
    received = []
    while (message := await socket.receive_json_from(timeout=5))["type"] == "log":
        received.append((message["seq"], message["text"]))
    assert message["type"] == "status"
    return received


def test_a_visitor_who_is_not_logged_in_is_turned_away(run: PipelineRun) -> None:
    async def scenario() -> None:
        connected, code = await browser(run, AnonymousUser()).connect()
        assert (connected, code) == (False, 4401)

    in_one_event_loop(scenario)


def test_joining_mid_run_gives_the_backlog_then_the_live_log_without_gaps_or_duplicates(
    run: PipelineRun, ada: User
) -> None:
    log(run, "one", "two")

    async def scenario() -> None:
        socket = browser(run, ada)
        assert (await socket.connect())[0]
        await socket.send_json_to({"after": 0})
        backlog = await logs_until_status(socket)
        assert [text for _, text in backlog] == ["one\n", "two\n"]

        await database_sync_to_async(log)(run, "three")
        live = await socket.receive_json_from(timeout=5)
        assert (live["type"], live["text"], live["stage"]) == ("log", "three\n", "checkout")
        assert live["seq"] == backlog[-1][0] + 1

        # A chunk sent twice (a backlog read racing a publish) reaches the browser once.
        await database_sync_to_async(run_event_publish)(
            run.pk, {"type": "log", "seq": live["seq"], "stage": "checkout", "text": "again"}
        )
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    in_one_event_loop(scenario)


def test_a_reconnecting_browser_gets_only_what_it_missed(run: PipelineRun, ada: User) -> None:
    log(run, "one", "two", "three")
    first_seq = run.log_chunks.order_by("seq").first().seq

    async def scenario() -> None:
        socket = browser(run, ada)
        await socket.connect()
        await socket.send_json_to({"after": first_seq})
        assert [text for _, text in await logs_until_status(socket)] == ["two\n", "three\n"]
        await socket.disconnect()

    in_one_event_loop(scenario)


def log_in_section(run: PipelineRun, section: str, text: str) -> None:
    writer = StageLog(run.stages.get(name="test"))
    writer.section(section).write(text)
    writer.flush()


def log_test_steps(run: PipelineRun) -> None:
    """The test stage's own line, then two steps' output, as the stage log writes them."""
    writer = StageLog(run.stages.get(name="test"))
    writer.line("image app: built")
    writer.flush()
    log_in_section(run, "unit", "unit says\n")
    log_in_section(run, "integration", "integration says\n")


def test_the_stored_log_after_a_chunk_comes_with_each_chunks_stage_and_section(
    run: PipelineRun,
) -> None:
    log_test_steps(run)
    chunks = run_log_after(run.pk, 0)
    assert [(stage, section, text) for _, stage, section, text in chunks] == [
        ("test", "", "image app: built\n"),
        ("test", "unit", "unit says\n"),
        ("test", "integration", "integration says\n"),
    ]
    assert [seq for seq, *_ in run_log_after(run.pk, chunks[0][0])] == [
        chunks[1][0],
        chunks[2][0],
    ]


def test_the_backlog_says_which_section_each_chunk_belongs_to_as_live_chunks_do(
    run: PipelineRun, ada: User
) -> None:
    log_test_steps(run)

    async def scenario() -> None:
        socket = browser(run, ada)
        await socket.connect()
        await socket.send_json_to({"after": 0})
        backlog = []
        while (message := await socket.receive_json_from(timeout=5))["type"] == "log":
            backlog.append((message["stage"], message["section"], message["text"]))
        assert backlog == [
            ("test", "", "image app: built\n"),
            ("test", "unit", "unit says\n"),
            ("test", "integration", "integration says\n"),
        ]
        await database_sync_to_async(log_in_section)(run, "unit", "more\n")
        live = await socket.receive_json_from(timeout=5)
        assert (live["stage"], live["section"], live["text"]) == ("test", "unit", "more\n")
        await socket.disconnect()

    in_one_event_loop(scenario)


def test_status_changes_are_pushed_as_they_happen(run: PipelineRun, ada: User) -> None:
    async def scenario() -> None:
        socket = browser(run, ada)
        await socket.connect()
        await socket.send_json_to({"after": 0})
        assert (await socket.receive_json_from(timeout=5))["run"]["status"] == "queued"
        await database_sync_to_async(do_run_transition)(run=run, to="running")
        pushed = await socket.receive_json_from(timeout=5)
        assert pushed["type"] == "status" and pushed["run"]["status"] == "running"
        assert [stage["name"] for stage in pushed["run"]["stages"]][:2] == ["checkout", "config"]
        await socket.disconnect()

    in_one_event_loop(scenario)


def test_a_malformed_message_gets_an_error_not_a_crash(run: PipelineRun, ada: User) -> None:
    async def scenario() -> None:
        socket = browser(run, ada)
        await socket.connect()
        await socket.send_json_to({"after": "everything"})
        answer = await socket.receive_json_from(timeout=5)
        assert answer == {"type": "error", "message": 'send {"after": <last seq>}'}
        await socket.disconnect()

    in_one_event_loop(scenario)
