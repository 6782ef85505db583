"""The live run socket: backlog then live chunks, no gaps, no duplicates, logged-in users only."""

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from pipelines.live_updates import run_event_publish
from pipelines.models import PipelineRun
from pipelines.selectors import run_log_after
from pipelines.services import do_run_transition
from pipelines.stage_log import StageLog
from projects.services import project_secret_set
from releases.app_logs import app_log_read
from releases.models import Environment
from tests.factories import make_environment, make_project, make_run
from tests.releases.deployed_app import App
from tests.releases.talking_app import say, talking_app
from web.consumers import AppLogConsumer, RunLogConsumer

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


# --- The app log socket (ws/environments/<id>/logs/) -----------------------------------------

SECRET = "sk-live-7f3a9c2e"


@pytest.fixture
def app(tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]) -> App:
    return talking_app(tmp_path / "web", pushed_run)


def app_log_browser(environment_id: int, user: Any, query: str = "") -> WebsocketCommunicator:
    path = f"/ws/environments/{environment_id}/logs/" + (f"?{query}" if query else "")
    communicator = WebsocketCommunicator(AppLogConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"environment_id": environment_id}}
    return communicator


async def app_log_texts_until(socket: WebsocketCommunicator, wanted: str) -> list[str]:
    """The texts of the lines the socket sends, until one is `wanted`."""
    texts: list[str] = []
    while wanted not in texts:
        message = await socket.receive_json_from(timeout=10)
        assert (message["type"], message["backlog"]) == ("lines", False)
        texts += [line["text"] for line in message["lines"]]
    return texts


def test_the_app_log_socket_turns_away_visitors_and_what_it_does_not_know(ada: User) -> None:
    environment = make_environment(make_project(), "staging")

    async def scenario() -> None:
        assert await app_log_browser(environment.pk, AnonymousUser()).connect() == (False, 4401)
        assert await app_log_browser(environment.pk + 1000, ada).connect() == (False, 4404)
        assert await app_log_browser(environment.pk, ada, "host=nowhere").connect() == (
            False,
            4404,
        )
        assert await app_log_browser(environment.pk, ada, f"search={'x' * 201}").connect() == (
            False,
            4400,
        )

    in_one_event_loop(scenario)


@pytest.mark.docker
@pytest.mark.usefixtures("app_containers_removed")
def test_the_log_stream_shows_a_line_the_app_printed_after_the_page_opened(
    app: App, ada: User
) -> None:
    deployment = app.auto_deployment(app.release("v1"))
    assert deployment.status == "succeeded", deployment.failure_reason
    staging = app.environment("staging")
    project_secret_set(project=app.project, name="API_TOKEN", value=SECRET)
    Environment.objects.filter(pk=staging.pk).update(secret_names=["API_TOKEN"])
    say(staging, "before-opening")
    # Printed a second ago at least: reads stop a second in the past.
    deadline = time.monotonic() + 10
    while not app_log_read(staging, search="warned before-opening").lines:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    async def scenario() -> None:
        socket = app_log_browser(staging.pk, ada)
        assert (await socket.connect())[0]
        backlog = await socket.receive_json_from(timeout=10)
        assert backlog["backlog"] is True
        assert [line["text"] for line in backlog["lines"] if "opening" in line["text"]] == [
            "said before-opening",
            "warned before-opening",
        ]

        await sync_to_async(say)(staging, f"after-opening-{SECRET}")
        texts = await app_log_texts_until(socket, "warned after-opening-••••••")

        assert "said after-opening-••••••" in texts
        assert not any(SECRET in text for text in texts)
        await socket.disconnect()

        # A search opens on the matching lines only.
        searching = app_log_browser(staging.pk, ada, "search=WARNED+after")
        assert (await searching.connect())[0]
        found = await searching.receive_json_from(timeout=10)
        assert [(line["stream"], line["text"]) for line in found["lines"]] == [
            ("stderr", "warned after-opening-••••••")
        ]
        await searching.disconnect()

    in_one_event_loop(scenario)
