"""Projects, runs and the stage runner, against the real database."""

import inspect
from collections.abc import Callable

import pytest
from django.test import override_settings

from infrastructure import dispatch
from pipelines.execution import StageFailure, StageTools, stages_execute
from pipelines.models import PipelineRun, RunEvent
from pipelines.selectors import stage_log_text
from pipelines.services import do_run_transition, do_stage_transition, run_cancel, run_create
from pipelines.stage_log import StageLog
from pipelines.states import IllegalTransition, RunStatus, StageStatus
from projects.services import ProjectError
from tests.factories import make_project
from tests.fakes import fake_stage_tools

pytestmark = pytest.mark.django_db

SHA = "a" * 40
# The run path needs no engine here; lost attempts' sweeps go to an in-memory one.
TOOLS = fake_stage_tools()


def stage_tasks(callbacks: list[Callable[[], object]]) -> list[Callable[[], object]]:
    """The on-commit callbacks that send a stage's task (others publish live status)."""
    stage_routes = list(dispatch.STAGE_ROUTES.values())
    return [
        callback
        for callback in callbacks
        if inspect.isfunction(callback)
        and inspect.getclosurevars(callback).nonlocals.get("route") in stage_routes
    ]


def queue_run(test_command: str = "sh test.sh") -> PipelineRun:
    project = make_project(test_command=test_command)
    return run_create(project=project, ref="refs/heads/main", commit_sha=SHA, trigger="webhook")


def test_a_cancelled_runs_page_hears_its_final_status_once(
    django_capture_on_commit_callbacks: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cancel moves the run's stages, then the run; the page needs to hear only the end.
    run = queue_run()
    heard: list[str] = []
    monkeypatch.setattr(
        "pipelines.services.run_status_publish",
        lambda run_id: heard.append(PipelineRun.objects.get(pk=run_id).status),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert run_cancel(run=run, reason="superseded by #2")
    assert heard == [RunStatus.CANCELLED]


def test_runs_are_numbered_per_project() -> None:
    project = make_project()
    numbers = [
        run_create(project=project, ref="refs/heads/main", commit_sha=SHA, trigger="webhook").number
        for _ in range(3)
    ]
    other = run_create(project=make_project(), ref="refs/heads/x", commit_sha=SHA, trigger="manual")
    assert numbers == [1, 2, 3]
    assert other.number == 1


def test_a_new_run_is_queued_with_its_stages_pending_and_its_first_stage_enqueued(
    django_capture_on_commit_callbacks: Callable,
) -> None:
    with django_capture_on_commit_callbacks() as enqueued:
        run = queue_run()
    assert run.status == RunStatus.QUEUED
    assert [(s.name, s.status) for s in run.stages.all()] == [
        ("checkout", "pending"),
        ("config", "pending"),
        ("build", "pending"),
        ("test", "pending"),
        ("publish", "pending"),
    ]
    assert len(stage_tasks(enqueued)) == 1
    assert RunEvent.objects.filter(run=run, stage=None).get().to_status == "queued"


def test_run_create_refuses_an_abbreviated_or_foreign_commit_id() -> None:
    project = make_project()
    for sha in ("abc123", "--upload-pack=x", "g" * 40):
        with pytest.raises(ValueError, match="not a full hexadecimal commit id"):
            run_create(project=project, ref="refs/heads/main", commit_sha=sha, trigger="webhook")


def test_an_illegal_transition_is_refused_and_nothing_is_recorded() -> None:
    run = queue_run()
    events_before = RunEvent.objects.count()
    with pytest.raises(IllegalTransition):
        do_run_transition(run=run, to=RunStatus.SUCCEEDED)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert RunEvent.objects.count() == events_before


def test_every_transition_is_recorded_with_its_reason() -> None:
    run = queue_run()
    do_run_transition(run=run, to=RunStatus.RUNNING)
    do_run_transition(run=run, to=RunStatus.CANCELLED, reason="cancelled by alice")
    moves = list(
        RunEvent.objects.filter(run=run, stage=None).values_list(
            "from_status", "to_status", "reason"
        )
    )
    assert moves == [
        ("", "queued", "webhook"),
        ("queued", "running", ""),
        ("running", "cancelled", "cancelled by alice"),
    ]
    run.refresh_from_db()
    assert run.started_at is not None and run.finished_at is not None


def execute(run: PipelineRun, stage_name: str, task_id: str, body: "CountingBody") -> None:
    """One stage's task, as a worker that sends the next stage to the broker runs it."""
    stages_execute(
        run_id=run.pk,
        stage_name=stage_name,
        task_id=task_id,
        bodies={stage_name: body},
        tools=TOOLS,
        carry_on=False,
    )


class CountingBody:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls = 0
        self.fail_with = fail_with

    def __call__(self, run: PipelineRun, log: StageLog, tools: StageTools) -> None:
        self.calls += 1
        log.line(f"doing the work, call {self.calls}")
        if self.fail_with:
            raise self.fail_with


def test_a_stage_runs_once_and_the_run_moves_on(
    django_capture_on_commit_callbacks: Callable,
) -> None:
    run = queue_run()
    body = CountingBody()
    with django_capture_on_commit_callbacks() as enqueued:
        execute(run, "checkout", "task-1", body)
    run.refresh_from_db()
    assert body.calls == 1
    assert run.status == RunStatus.RUNNING
    assert run.stages.get(name="checkout").status == StageStatus.SUCCEEDED
    assert len(stage_tasks(enqueued)) == 1  # the build stage
    assert "doing the work, call 1" in stage_log_text(run.stages.get(name="checkout"))


def test_a_duplicate_message_for_a_running_stage_does_not_run_it_twice() -> None:
    run = queue_run()
    stage = run.stages.get(name="checkout")
    do_run_transition(run=run, to=RunStatus.RUNNING)
    do_stage_transition(stage=stage, to=StageStatus.RUNNING, task_id="task-1")
    body = CountingBody()
    execute(run, "checkout", "task-2", body)
    assert body.calls == 0
    assert run.stages.get(name="checkout").status == StageStatus.RUNNING


def test_the_redelivery_of_a_task_whose_worker_died_restarts_its_stage() -> None:
    run = queue_run()
    stage = run.stages.get(name="checkout")
    do_run_transition(run=run, to=RunStatus.RUNNING)
    do_stage_transition(stage=stage, to=StageStatus.RUNNING, task_id="task-1")
    body = CountingBody()
    execute(run, "checkout", "task-1", body)
    assert body.calls == 1
    moves = list(RunEvent.objects.filter(stage=stage).values_list("to_status", flat=True))
    assert moves == ["running", "pending", "running", "succeeded"]


def test_a_redelivered_task_for_a_finished_stage_only_makes_sure_the_run_moves_on(
    django_capture_on_commit_callbacks: Callable,
) -> None:
    run = queue_run()
    execute(run, "checkout", "task-1", CountingBody())
    body = CountingBody()
    with django_capture_on_commit_callbacks() as enqueued:
        execute(run, "checkout", "task-1", body)
    assert body.calls == 0
    assert len(stage_tasks(enqueued)) == 1  # the build stage again; its task ignores a duplicate


def test_a_failing_stage_fails_the_run_and_skips_the_stages_after_it() -> None:
    run = queue_run()
    body = CountingBody(fail_with=StageFailure("no Dockerfile at the root of the repository"))
    execute(run, "checkout", "t", body)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert (run.failed_stage, run.failure_reason) == (
        "checkout",
        "no Dockerfile at the root of the repository",
    )
    assert {s.name: s.status for s in run.stages.all()} == {
        "checkout": "failed",
        "config": "skipped",
        "build": "skipped",
        "test": "skipped",
        "publish": "skipped",
    }
    assert "checkout failed: no Dockerfile" in stage_log_text(run.stages.get(name="checkout"))


def test_a_crash_in_a_stage_fails_the_run_instead_of_leaving_it_running() -> None:
    run = queue_run()
    body = CountingBody(fail_with=KeyError("surprise"))
    execute(run, "checkout", "t", body)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.failure_reason == "internal error: KeyError('surprise')"


def test_the_last_stage_succeeding_settles_the_run() -> None:
    run = queue_run()
    for name in ("checkout", "config", "build", "test", "publish"):
        execute(run, name, f"t-{name}", CountingBody())
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is not None


def test_a_worker_carrying_on_runs_every_stage_itself_without_sending_one_to_the_broker(
    django_capture_on_commit_callbacks: Callable,
) -> None:
    run = queue_run()
    bodies = {name: CountingBody() for name in dispatch.STAGE_ROUTES}
    first_task = run.stages.get(name="checkout").task_id
    with django_capture_on_commit_callbacks() as sent:
        stages_execute(
            run_id=run.pk,
            stage_name="checkout",
            task_id=first_task,
            bodies=bodies,
            tools=TOOLS,
            carry_on=True,
        )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert {name: body.calls for name, body in bodies.items()} == dict.fromkeys(bodies, 1)
    assert stage_tasks(sent) == []
    # Each stage was claimed under the id it was enqueued with, as a broker's delivery is.
    task_ids = list(run.stages.order_by("position").values_list("task_id", flat=True))
    assert task_ids[0] == first_task and len(set(task_ids)) == 5


@pytest.mark.django_db(transaction=True)
def test_a_worker_carrying_on_never_shows_the_run_idle_between_two_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the run's page hears at each commit: one status per stage handed on, with the next
    # stage already running (the stage that ended and the one that starts commit together).
    heard: list[list[str]] = []

    def page_hears(run_id: int) -> None:
        heard.append(
            list(
                PipelineRun.objects.get(pk=run_id)
                .stages.order_by("position")
                .values_list("status", flat=True)
            )
        )

    monkeypatch.setattr("pipelines.services.run_status_publish", page_hears)
    # Committed for real, so nothing may reach the broker that a later test's worker takes.
    monkeypatch.setattr("config.celery.app.send_task", lambda *args, **kwargs: None)
    run = queue_run()
    bodies = {name: CountingBody() for name in dispatch.STAGE_ROUTES}
    stages_execute(
        run_id=run.pk,
        stage_name="checkout",
        task_id=run.stages.get(name="checkout").task_id,
        bodies=bodies,
        tools=TOOLS,
        carry_on=True,
    )
    running = [statuses.count(StageStatus.RUNNING) for statuses in heard]
    assert running == [1, 1, 1, 1, 1, 0]
    assert heard[-1] == [StageStatus.SUCCEEDED] * 5


def test_a_worker_not_carrying_on_sends_the_next_stage_to_the_broker(
    django_capture_on_commit_callbacks: Callable,
) -> None:
    run = queue_run()
    bodies = {name: CountingBody() for name in dispatch.STAGE_ROUTES}
    with django_capture_on_commit_callbacks() as sent:
        stages_execute(
            run_id=run.pk,
            stage_name="checkout",
            task_id="t-checkout",
            bodies=bodies,
            tools=TOOLS,
            carry_on=False,
        )
    assert [body.calls for body in bodies.values()] == [1, 0, 0, 0, 0]
    assert len(stage_tasks(sent)) == 1
    assert run.stages.get(name="config").status == StageStatus.PENDING


def test_a_carrying_worker_stops_at_a_failed_stage() -> None:
    run = queue_run()
    bodies = {name: CountingBody() for name in dispatch.STAGE_ROUTES}
    bodies["build"] = CountingBody(fail_with=StageFailure("COPY failed: no such file app/"))
    stages_execute(
        run_id=run.pk, stage_name="checkout", task_id="t", bodies=bodies, tools=TOOLS, carry_on=True
    )
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert [body.calls for body in bodies.values()] == [1, 1, 1, 0, 0]
    assert run.stages.get(name="test").status == StageStatus.SKIPPED


def test_a_stage_of_a_finished_run_does_nothing() -> None:
    run = queue_run()
    do_run_transition(run=run, to=RunStatus.CANCELLED)
    body = CountingBody()
    execute(run, "checkout", "t", body)
    assert body.calls == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"slug": "Web App"}, "slug 'Web App'"),
        ({"repository_url": "--upload-pack=evil"}, "repository: "),
        ({"webhook_secret": "short"}, "secret: use at least 16"),
        ({"test_command": "sh -c 'unclosed"}, "test command"),
        ({"forge": "bitbucket"}, "forge 'bitbucket'"),
        ({"test_timeout": 0}, "test timeout 0"),
    ],
)
def test_project_create_names_the_field_it_refuses(fields: dict, message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        make_project(**fields)


def test_a_repository_is_one_project_whatever_the_url_form() -> None:
    make_project(slug="web", repository_url="https://github.com/acme/web.git")
    with pytest.raises(ProjectError, match="already project 'web'"):
        make_project(slug="web2", repository_url="git@github.com:Acme/web.git")


@override_settings(DOCKYARD_ALLOW_LOCAL_REPOSITORIES=False)
def test_local_repositories_are_refused_unless_the_operator_allows_them() -> None:
    with pytest.raises(ProjectError, match="DOCKYARD_ALLOW_LOCAL_REPOSITORIES"):
        make_project(repository_url="/srv/git/web")
