"""The stored log numbered as the log viewer numbers it (static/js/run_log.js, LogLines)."""

import json
from pathlib import Path

from web.log_lines import LogLine, first_error_line, numbered_lines, shown_text

# A log with sections, and its lines as the viewer numbers them: its tests read the same file.
SECTIONED_LOG = Path(__file__).parents[1] / "js" / "sectioned_log.json"


def stage_chunks(chunks: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(stage, text) chunks as a stage without sections writes them."""
    return [(stage, "", text) for stage, text in chunks]


def numbers_and_stages(chunks: list[tuple[str, str]]) -> list[tuple[int, str]]:
    return [(line.number, line.stage) for line in numbered_lines(stage_chunks(chunks))]


def test_lines_are_numbered_from_one_across_stages() -> None:
    lines = list(
        numbered_lines(stage_chunks([("checkout", "cloned\n"), ("build", "step 1\nstep 2\n")]))
    )
    assert lines == [
        LogLine(number=1, stage="checkout", text="cloned"),
        LogLine(number=2, stage="build", text="step 1"),
        LogLine(number=3, stage="build", text="step 2"),
    ]


def test_a_line_a_stage_left_unfinished_keeps_its_number_and_the_next_stage_starts_anew() -> None:
    # The same log as the viewer's test: both must number it alike.
    chunks = [("checkout", "no newline at the end"), ("build", "first\r\nsecond\n\nlast")]
    assert numbers_and_stages(chunks) == [
        (1, "checkout"),
        (2, "build"),
        (3, "build"),
        (4, "build"),
        (5, "build"),
    ]


def test_a_line_split_across_chunks_is_one_line() -> None:
    lines = list(
        numbered_lines(stage_chunks([("build", "Step 1/3 : FR"), ("build", "OM scratch\nnext\n")]))
    )
    assert [line.text for line in lines] == ["Step 1/3 : FROM scratch", "next"]


def test_a_carriage_return_alone_at_a_stage_end_makes_no_line() -> None:
    assert numbers_and_stages([("build", "done\n\r"), ("test", "ok\n")]) == [
        (1, "build"),
        (2, "test"),
    ]


def test_blank_lines_are_lines() -> None:
    assert [line.text for line in numbered_lines(stage_chunks([("build", "a\n\n\nb\n")]))] == [
        "a",
        "",
        "",
        "b",
    ]


def test_the_text_shown_has_no_escapes_and_only_the_last_state_of_an_overwritten_line() -> None:
    assert shown_text("\x1b[1;31mERROR\x1b[0m: failed") == "ERROR: failed"
    assert shown_text("downloading 10%\rdownloading 100%") == "downloading 100%"
    assert shown_text("kept\r") == "kept"
    assert shown_text("\x1b]0;title\x07see \x1b[2Kthis\x1b[") == "see this"
    assert shown_text("a\x07b\tc") == "ab\tc"


def test_the_error_line_is_the_first_that_says_something_went_wrong() -> None:
    lines = list(
        numbered_lines(
            [
                (
                    "test",
                    "",
                    "collected 3 items, 0 errors so far\n"
                    "test_home PASSED\n"
                    "test_login FAILED\n"
                    "Traceback (most recent call last):\n",
                )
            ]
        )
    )
    error = first_error_line(lines)
    assert error is not None and (error.number, error.text) == (3, "test_login FAILED")


def test_without_any_line_saying_what_went_wrong_the_error_line_is_the_last() -> None:
    lines = list(numbered_lines(stage_chunks([("test", "running the suite\nstill running\n")])))
    error = first_error_line(lines)
    assert error is not None and error.number == 2
    assert first_error_line([]) is None


def test_words_of_failure_are_recognised_as_tools_print_them() -> None:
    said = [
        "ERROR: failed to solve: process did not complete successfully",
        "sh: make: not found",
        "The command returned a non-zero code: 2",
        "error: exit status 1",
        "panic: runtime error: index out of range",
        "E   AssertionError: assert 302 == 200",
    ]
    lines = [LogLine(number=n, stage="build", text=text) for n, text in enumerate(said, 1)]
    assert all(first_error_line([line]) == line for line in lines)
    calm = LogLine(number=1, stage="build", text="Successfully built 0123abc, no errors")
    last = LogLine(number=2, stage="build", text="done")
    assert first_error_line([calm, last]) == last


def test_a_log_with_sections_is_numbered_line_for_line_as_the_viewer_numbers_it() -> None:
    fixture = json.loads(SECTIONED_LOG.read_text())
    chunks = [(stage, section, text) for stage, section, text in fixture["chunks"]]
    lines = [[line.number, line.stage, line.section, line.text] for line in numbered_lines(chunks)]
    assert lines == fixture["lines"]


def test_another_sections_chunk_ends_the_line_a_section_left_open() -> None:
    chunks = [
        ("test", "unit", "...."),
        ("test", "integration", "ok\n"),
        ("test", "unit", "F\n"),
    ]
    assert [(line.section, line.text) for line in numbered_lines(chunks)] == [
        ("unit", "...."),
        ("integration", "ok"),
        ("unit", "F"),
    ]
