"""An environment's app logs: what the live containers print, both streams, every host, merged
by time, secrets masked; through the service, the API and the download."""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from pipelines.models import PipelineRun
from projects.services import project_secret_set
from releases import app_logs
from releases.app_log_reading import AppLogReader
from releases.app_logs import (
    DOCKYARD_STREAM,
    AppLogFollower,
    AppLogLine,
    AppLogUnavailable,
    RelayedAppLogReader,
    app_log_read,
    app_log_sources,
    log_horizon,
    log_since_parsed,
)
from releases.models import Environment, Host, HostDeployment
from tests.factories import (
    make_environment,
    make_host,
    make_project,
    make_release,
    make_succeeded_deployment,
)
from tests.releases.deployed_app import App
from tests.releases.talking_app import say, talking_app

SECRET = "sk-live-7f3a9c2e"
# Nothing listens there: an engine that cannot be reached.
SILENT_ENGINE = "tcp://127.0.0.1:1"


@pytest.fixture
def app(tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]) -> App:
    return talking_app(tmp_path / "web", pushed_run)


@pytest.fixture
def staging(app: App) -> Environment:
    """Staging, serving release 1 of the app."""
    deployment = app.auto_deployment(app.release("v1"))
    assert deployment.status == "succeeded", deployment.failure_reason
    return app.environment("staging")


def lines_until(read: Callable[[], list[AppLogLine]], text: str) -> list[AppLogLine]:
    """Read until a line holds `text` (a read stops a second in the past)."""
    deadline = time.monotonic() + 10
    while True:
        lines = read()
        if any(text in line.text for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no line holds {text!r}: {lines[-5:]}"
        time.sleep(0.3)


def unreachable_host_serving(environment: Environment, *, name: str = "far") -> Host:
    """A host of the environment whose engine does not answer, recorded as serving there."""
    far = make_host(name, "127.0.0.9", SILENT_ENGINE)
    environment.hosts.add(far)
    deployment = environment.deployments.filter(
        status="succeeded"
    ).first() or make_succeeded_deployment(
        environment, make_release(environment.project, 1), live=True
    )
    HostDeployment.objects.create(
        deployment=deployment,
        host=far,
        position=9,
        batch=0,
        status="finished",
        container_id="c0ffee",
        finished_at=timezone.now(),
    )
    return far


def api_client(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_since_is_read_as_iso_8601_or_unix_seconds_and_anything_else_is_refused() -> None:
    moment = datetime(2024, 5, 1, 12, 34, 56, 500000, tzinfo=UTC)
    assert log_since_parsed("2024-05-01T12:34:56.5Z") == moment
    assert log_since_parsed("2024-05-01T14:34:56.5+02:00") == moment
    assert log_since_parsed("2024-05-01T12:34:56.5") == moment
    assert log_since_parsed(str(moment.timestamp())) == moment
    assert log_since_parsed("1714566896") == moment.replace(microsecond=0)
    with pytest.raises(ValueError, match="neither ISO 8601"):
        log_since_parsed("yesterday")


@pytest.mark.django_db
def test_a_host_whose_engine_does_not_answer_gives_a_line_saying_so_once() -> None:
    environment = make_environment(make_project(), "production", hosts=[])
    unreachable_host_serving(environment)

    sources = app_log_sources(environment.pk)
    [line] = AppLogReader().read(sources, since=None, until=log_horizon(), tail=200)
    follower = AppLogFollower(AppLogReader())
    told = follower.backlog(app_log_sources(environment.pk))
    again = follower.newer(app_log_sources(environment.pk))

    assert (line.host, line.stream) == ("far", DOCKYARD_STREAM)
    assert line.text.startswith("the logs on far could not be read: ")
    assert [line.text for line in told] == [line.text]
    assert again == []


@pytest.mark.django_db
def test_without_a_deploy_worker_the_reader_says_so_once_and_the_api_answers_503(
    monkeypatch: pytest.MonkeyPatch, admin_user: User
) -> None:
    monkeypatch.setattr(app_logs, "RELAY_TIMEOUT_SECONDS", 1)
    environment = make_environment(make_project(), "production", hosts=[])
    unreachable_host_serving(environment)
    follower = AppLogFollower(RelayedAppLogReader(environment_id=environment.pk))

    [told] = follower.backlog(app_log_sources(environment.pk))
    again = follower.newer(app_log_sources(environment.pk))
    answer = api_client(admin_user).get(f"/api/v1/environments/{environment.pk}/logs/")

    assert told.stream == DOCKYARD_STREAM
    assert told.text.startswith("no deploy worker read the app logs (no worker answered on ")
    assert again == []
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "app_logs_unavailable"
    with pytest.raises(AppLogUnavailable):
        app_log_read(environment)


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("app_containers_removed")
class TestWithADeployedApp:
    def test_the_lines_of_both_streams_come_merged_by_time_with_where_they_ran(
        self, staging: Environment
    ) -> None:
        say(staging, "merged")

        lines = lines_until(lambda: app_log_read(staging).lines, "warned merged")

        started = next(line for line in lines if line.text.startswith("listening on "))
        said = next(line for line in lines if line.text == "said merged")
        warned = next(line for line in lines if line.text == "warned merged")
        assert (started.stream, said.stream, warned.stream) == ("stdout", "stdout", "stderr")
        assert started.at < said.at < warned.at
        assert [line.at for line in lines] == sorted(line.at for line in lines)
        assert {(line.host, line.slot, line.release, line.replica) for line in lines} == {
            ("local", staging.live_slot, 1, 1)
        }

    def test_a_secret_the_app_prints_is_masked_and_cannot_be_searched_for(
        self, staging: Environment
    ) -> None:
        project_secret_set(project=staging.project, name="API_TOKEN", value=SECRET)
        Environment.objects.filter(pk=staging.pk).update(secret_names=["API_TOKEN"])
        say(staging, f"token={SECRET}")

        lines = lines_until(lambda: app_log_read(staging).lines, "warned token=")

        assert [line.text for line in lines if "token=" in line.text] == [
            "said token=••••••",
            "warned token=••••••",
        ]
        assert all(SECRET not in line.text for line in lines)
        assert app_log_read(staging, search=SECRET[:12]).lines == []
        assert len(app_log_read(staging, search="WARNED TOKEN=").lines) == 1

    def test_a_search_and_a_host_narrow_the_lines(self, staging: Environment) -> None:
        say(staging, "wanted")
        say(staging, "unwanted")
        lines_until(lambda: app_log_read(staging).lines, "warned unwanted")

        found = app_log_read(staging, search="warned wanted", host="local").lines

        assert [line.text for line in found] == ["warned wanted"]

    def test_a_host_that_does_not_answer_leaves_the_others_lines_in_place(
        self, staging: Environment
    ) -> None:
        say(staging, "still-read")
        unreachable_host_serving(staging)

        lines = lines_until(lambda: app_log_read(staging).lines, "warned still-read")

        assert [line.host for line in lines if line.stream == DOCKYARD_STREAM] == ["far"]
        assert {line.host for line in lines if line.stream != DOCKYARD_STREAM} == {"local"}
        assert [line.stream for line in app_log_read(staging, host="far").lines] == [
            DOCKYARD_STREAM
        ]

    def test_the_api_gives_each_line_once_to_a_bot_that_asks_again_since_next_since(
        self, staging: Environment
    ) -> None:
        bot = api_client(User.objects.create_user("bot"))
        url = f"/api/v1/environments/{staging.pk}/logs/"

        def read(**query: Any) -> dict[str, Any]:
            answer = bot.get(url, query)
            assert answer.status_code == 200, answer.content
            return dict(answer.json())

        say(staging, "before")
        lines_until(lambda: app_log_read(staging).lines, "warned before")
        first = read()
        say(staging, "after")
        # Two bots, each asking again from its own last answer's next_since: one searching.
        said: list[str] = []
        warned: list[str] = []
        searched_since = since = first["next_since"]
        deadline = time.monotonic() + 10
        while "said after" not in said or "warned after" not in warned:
            assert time.monotonic() < deadline, (said, warned)
            time.sleep(0.3)
            answer = read(since=searched_since, search="said")
            said += [line["text"] for line in answer["lines"]]
            searched_since = answer["next_since"]
            answer = read(since=since)
            warned += [line["text"] for line in answer["lines"] if "warned" in line["text"]]
            since = answer["next_since"]

        assert first["lines"][-1].keys() == {
            "at",
            "host",
            "slot",
            "release",
            "replica",
            "stream",
            "text",
        }
        assert "warned before" in [line["text"] for line in first["lines"]]
        assert (said, warned) == (["said after"], ["warned after"])
        unix_seconds = datetime.fromisoformat(first["next_since"]).timestamp()
        assert [line["text"] for line in read(since=unix_seconds, search="after")["lines"]] == [
            "said after",
            "warned after",
        ]

    def test_the_download_is_the_newest_lines_as_text(self, staging: Environment) -> None:
        client = Client()
        client.force_login(User.objects.create_user("reader"))
        say(staging, "downloaded")
        lines_until(lambda: app_log_read(staging).lines, "warned downloaded")
        path = f"/projects/{staging.project.slug}/environments/staging/logs.txt"

        answer = client.get(path, {"search": "warned"})

        assert answer.status_code == 200
        assert answer["Content-Disposition"].endswith(f'"{staging.project.slug}-staging-app.log"')
        [line] = answer.content.decode().splitlines()
        assert line.endswith(f"Z local {staging.live_slot} r1 stderr: warned downloaded")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "wrong"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"host": "nowhere"}, "host"),
        ({"tail": "0"}, "tail"),
        ({"search": "x" * 201}, "search"),
    ],
)
def test_the_api_refuses_a_bad_query_naming_what_was_wrong(
    query: dict[str, str], wrong: str
) -> None:
    environment = make_environment(make_project(), "staging")
    answer = api_client(User.objects.create_user("bot")).get(
        f"/api/v1/environments/{environment.pk}/logs/", query
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"{wrong}: ")


@pytest.mark.django_db
def test_the_logs_are_for_logged_in_users_of_environments_that_exist() -> None:
    environment = make_environment(make_project(), "staging")
    url = f"/api/v1/environments/{environment.pk}/logs/"
    download = f"/projects/{environment.project.slug}/environments/staging/logs.txt"
    reader = User.objects.create_user("reader")
    signed_in = Client()
    signed_in.force_login(reader)

    answer = api_client(reader).get(url)
    missing = api_client(reader).get(f"/api/v1/environments/{environment.pk + 1000}/logs/")

    assert APIClient().get(url).status_code in {401, 403}
    assert Client().get(download).status_code == 302
    assert answer.status_code == 200
    assert answer.json()["lines"] == []
    assert datetime.fromisoformat(answer.json()["next_since"]) < timezone.now()
    assert missing.status_code == 404
    assert signed_in.get(download.replace("/staging/", "/nowhere/")).status_code == 404
    assert signed_in.get(download, {"since": "soon"}).status_code == 400
