"""JUnit XML reports, as test runners write them (pytest --junitxml, Maven Surefire, Jest's
junit reporter, go-junit-report, ...). Pure: bytes in, test cases out.

The files come from the code under test, so they are hostile until proven otherwise: parsed by
defusedxml (no entities, no DTDs, so no billion laughs and no external files), bounded in size
and in the number of cases kept.
"""

import io
import posixpath
import re
import tarfile
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeTree
from defusedxml import DefusedXmlException

MAX_REPORT_BYTES = 16 * 1024 * 1024
MAX_CASES_PER_REPORT = 20_000
MAX_MESSAGE_CHARS = 4_000


class ReportRefused(ValueError):
    """A report that is not JUnit XML Dockyard will read; the message says why."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    classname: str
    file: str
    # passed, failed, error or skipped
    status: str
    seconds: float
    message: str


def junit_cases(document: bytes) -> list[CaseResult]:
    """Every test case of a JUnit XML document (<testsuites>, <testsuite> or one <testcase>)."""
    if len(document) > MAX_REPORT_BYTES:
        raise ReportRefused(f"larger than {MAX_REPORT_BYTES // 2**20} MiB")
    try:
        root = SafeTree.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as refusal:
        raise ReportRefused(f"refused as unsafe XML ({type(refusal).__name__})") from None
    except SafeTree.ParseError as error:
        raise ReportRefused(f"not XML: {error}") from None
    if root.tag not in {"testsuites", "testsuite", "testcase"}:
        raise ReportRefused(f"not a JUnit report (its root is <{root.tag}>)")
    cases = [root] if root.tag == "testcase" else list(root.iter("testcase"))
    if len(cases) > MAX_CASES_PER_REPORT:
        raise ReportRefused(f"more than {MAX_CASES_PER_REPORT} test cases")
    return [_case(element) for element in cases]


def report_files(archive: bytes, pattern: str, *, archived_path: str) -> list[tuple[str, bytes]]:
    """(path, content) of the files in `archive` (a tar of `archived_path`, as the engine's
    archive API gives it) that the glob `pattern` names, in name order."""
    found: list[tuple[str, bytes]] = []
    matcher = glob_pattern(pattern)
    # The archive's members start with the last component of the archived folder.
    base = posixpath.dirname(archived_path.rstrip("/"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            path = posixpath.normpath(posixpath.join(base, member.name))
            if matcher.fullmatch(path) and member.size <= MAX_REPORT_BYTES:
                content = tar.extractfile(member)
                if content is not None:
                    found.append((path, content.read()))
    return sorted(found)


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A glob over paths: `*` and `?` stay within one folder, `**` crosses folders."""
    regex = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            regex.append(".*")
            index += 2
        elif pattern[index] == "*":
            regex.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            regex.append("[^/]")
            index += 1
        elif pattern[index] == "[" and (end := pattern.find("]", index + 1)) > index:
            regex.append("[" + pattern[index + 1 : end].replace("\\", "\\\\") + "]")
            index = end + 1
        else:
            regex.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(regex))


def archived_folder(pattern: str) -> str:
    """The folder to read back for `pattern`: the part of it before its first wildcard."""
    fixed = []
    for part in pattern.split("/"):
        if any(wildcard in part for wildcard in "*?["):
            break
        fixed.append(part)
    else:
        fixed = fixed[:-1]  # a plain file name: read its folder
    return "/".join(fixed) or "."


def _case(element: Element) -> CaseResult:
    status, message = "passed", ""
    for outcome in ("failure", "error", "skipped"):
        found = element.find(outcome)
        if found is not None:
            status = "failed" if outcome == "failure" else outcome
            message = " ".join(
                part.strip() for part in (found.get("message") or "", found.text or "") if part
            )
            break
    try:
        seconds = float(element.get("time") or 0)
    except ValueError:
        seconds = 0.0
    return CaseResult(
        name=(element.get("name") or "(unnamed)")[:500],
        classname=(element.get("classname") or "")[:500],
        file=(element.get("file") or "")[:500],
        status=status,
        seconds=max(seconds, 0.0),
        message=message[:MAX_MESSAGE_CHARS],
    )
