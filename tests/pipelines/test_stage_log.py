"""The stage log writes output as it arrives, masks secrets and passes on cancellation."""

import threading

import pytest

from pipelines.models import LogChunk, Stage
from pipelines.selectors import stage_log_text
from pipelines.services import run_create
from pipelines.stage_log import StageLog
from tests.factories import make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def stage() -> Stage:
    run = run_create(
        project=make_project(), ref="refs/heads/main", commit_sha="f" * 40, trigger="manual"
    )
    return run.stages.get(name="test")


def test_output_is_written_while_the_work_still_runs(stage: Stage) -> None:
    written = threading.Event()

    def should_stop() -> bool:
        # Asked on the stage's own thread while the work runs: is the line in the database yet?
        if LogChunk.objects.filter(stage=stage, text__contains="first line").exists():
            written.set()
        return False

    def work() -> str:
        log.write("first line\n")
        # The work goes on only once the line was written out: it does not wait for the end.
        written.wait(timeout=10)
        return "done"

    log = StageLog(stage, should_stop=should_stop)
    assert log.stream(work) == "done"
    log.close()
    assert written.is_set()


def test_stop_is_requested_when_the_run_is_cancelled(stage: Stage) -> None:
    log = StageLog(stage, should_stop=lambda: True)

    def work() -> bool:
        return log.stop_requested.wait(timeout=10)

    assert log.stream(work) is True


def test_an_error_in_the_work_reaches_the_caller(stage: Stage) -> None:
    log = StageLog(stage)

    def work() -> None:
        raise RuntimeError("engine gone")

    with pytest.raises(RuntimeError, match="engine gone"):
        log.stream(work)


def test_secrets_are_masked_and_chunks_are_numbered_in_order(stage: Stage) -> None:
    log = StageLog(stage, secrets=["tok-123456"])
    log.write("a tok-12")
    log.flush()
    log.write("3456 b\n")
    log.close()
    assert stage_log_text(stage) == "a •••••• b\n"
    seqs = list(LogChunk.objects.filter(stage=stage).values_list("seq", flat=True))
    assert seqs == sorted(seqs)


def test_nul_bytes_from_a_test_do_not_break_the_log(stage: Stage) -> None:
    log = StageLog(stage)
    log.write("binary\x00junk\n")
    log.close()
    assert stage_log_text(stage) == "binary\ufffdjunk\n"


def test_a_line_of_dockyards_own_is_not_held_back_behind_a_sections_output(stage: Stage) -> None:
    # A long secret makes the masker hold back its length of every piece; Dockyard's own
    # whole lines must still come out before what a step prints after them.
    log = StageLog(stage, secrets=["s" * 40])
    log.line("image app: registry/app@sha256:0123456789abcdef0123456789abcdef")
    step = log.section("unit")
    log.flush()
    step.write("step output, no newline yet")
    log.close()

    chunks = list(LogChunk.objects.filter(stage=stage).order_by("seq"))
    assert [(chunk.section, chunk.text) for chunk in chunks] == [
        ("", "image app: registry/app@sha256:0123456789abcdef0123456789abcdef\n"),
        ("unit", "step output, no newline yet"),
    ]
