"""A stored run log as the log viewer shows it: numbered lines of plain text. Pure: no ORM, no I/O.

The viewer (static/js/run_log.js, LogLines) and the server must agree on what line 1234 is:
the search answers in line numbers, the failure banner links to `#L<n>`, and a link copied
from the page must open on the same line. The rules are the viewer's:

- lines end at "\\n"; a stage's first chunk starts a new line even when the stage before it
  ended mid-line, and so does a chunk of another section of the stage (a test step: steps
  running side by side interleave their chunks, never their lines); the stage and section
  headers the viewer draws are not numbered;
- "\\r" lets the text after it replace the line (a progress bar shows its last state);
- ANSI escapes and stray control characters are not part of the text shown.
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# The viewer's ESCAPE_SEQUENCE, alternative for alternative: SGR, any other CSI, a CSI cut off
# by the end of the text, OSC up to BEL, ST or the end, any other escape, a lone ESC at the end.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-9;:]*m|\[[0-?]*[ -/]*[@-~]|\[[0-?]*[ -/]*$|\][^\x07\x1b]*(?:\x07|\x1b\\|$)"
    r"|[ -/]*[0-~]|$)"
)
# Tab stays, as in the viewer: rows keep their white space.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

# Words a failing tool prints where it fails (compilers, test runners, shells, Docker). A line
# saying there were none ("0 errors", "no failures") is not where anything went wrong.
_ERROR_WORDS = re.compile(
    r"\b(?:error|errors|failed|failure|failures|fatal|exception|traceback|panic)\b"
    r"|\bnot found\b|\bnon-zero\b|\bexit (?:code|status) [1-9]",
    re.IGNORECASE,
)
_NOTHING_WRONG = re.compile(r"\b(?:0|no) (?:errors|failures)\b", re.IGNORECASE)


@dataclass(frozen=True)
class LogLine:
    number: int
    stage: str
    text: str
    # The test step (or "services") the line came from; "" for the stage's own lines.
    section: str = ""


def shown_text(raw: str) -> str:
    """One raw line (escapes, carriage returns) as the viewer shows it."""
    overwrites = [piece for piece in raw.split("\r") if piece]
    last = overwrites[-1] if overwrites else ""
    return _CONTROL_CHARACTERS.sub("", _ESCAPE_SEQUENCE.sub("", last))


def numbered_lines(chunks: Iterable[tuple[str, str, str]]) -> Iterator[LogLine]:
    """The log's lines from its chunks, (stage name, section, text) in order, numbered from 1."""
    number = 0
    stage: str | None = None
    section = ""
    open_line: list[str] = []
    # The viewer starts a line on text other than "\r", or on a "\n": a line holding only a
    # carriage return so far does not exist yet.
    line_started = False

    def emit() -> LogLine:
        nonlocal number, open_line, line_started
        number += 1
        line = LogLine(
            number=number,
            stage=stage or "",
            text=shown_text("".join(open_line)),
            section=section,
        )
        open_line, line_started = [], False
        return line

    for chunk_stage, chunk_section, text in chunks:
        if (chunk_stage, chunk_section) != (stage, section):
            if line_started:
                yield emit()
            open_line, line_started = [], False
            stage, section = chunk_stage, chunk_section
        *ended, rest = text.split("\n")
        for piece in ended:
            open_line.append(piece)
            yield emit()
        if rest:
            open_line.append(rest)
            line_started = line_started or rest.replace("\r", "") != ""
    if line_started:
        yield emit()


def looks_like_an_error(text: str) -> bool:
    return bool(_ERROR_WORDS.search(text)) and not _NOTHING_WRONG.search(text)


def first_error_line(lines: list[LogLine]) -> LogLine | None:
    """Where a failed stage's log shows what went wrong: its first line that says so, else its
    last line (the tool said nothing recognisable, and stopped there)."""
    for line in lines:
        if looks_like_an_error(line.text):
            return line
    return lines[-1] if lines else None
