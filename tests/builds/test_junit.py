"""JUnit reports read safely: cases and their outcomes, bombs and strangers refused."""

import io
import tarfile

import pytest

from builds.junit import ReportRefused, archived_folder, junit_cases, report_files

PYTEST_REPORT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.5">
<testcase classname="tests.test_math" name="test_adds" time="0.011"/>
<testcase classname="tests.test_math" name="test_divides" file="tests/test_math.py" time="0.2">
  <failure message="assert 2 == 3">def test_divides():
&gt;       assert 1 + 1 == 3</failure>
</testcase>
<testcase classname="tests.test_io" name="test_reads" time="0.1">
  <error message="OSError"/></testcase>
<testcase classname="tests.test_io" name="test_later" time="0">
  <skipped message="not yet"/></testcase>
</testsuite></testsuites>
"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite><testcase name="&lol3;"/></testsuite>
"""


def test_each_case_has_its_outcome_time_and_message() -> None:
    cases = junit_cases(PYTEST_REPORT)
    assert [(c.name, c.status) for c in cases] == [
        ("test_adds", "passed"),
        ("test_divides", "failed"),
        ("test_reads", "error"),
        ("test_later", "skipped"),
    ]
    failed = cases[1]
    assert (failed.classname, failed.file, failed.seconds) == (
        "tests.test_math",
        "tests/test_math.py",
        0.2,
    )
    assert failed.message.startswith("assert 2 == 3 def test_divides():")
    assert "> " in failed.message


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (BILLION_LAUGHS, "refused as unsafe XML"),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><testsuite/>', "refused as unsafe XML"),
        (b"<html><body>not a report</body></html>", "not a JUnit report"),
        (b"<testsuite><testcase", "not XML"),
    ],
)
def test_hostile_or_foreign_reports_are_refused_saying_why(document: bytes, why: str) -> None:
    with pytest.raises(ReportRefused, match=why):
        junit_cases(document)


def test_report_files_are_picked_out_of_the_engines_archive_by_glob() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [
            ("reports/unit.xml", b"<testsuite/>"),
            ("reports/notes.txt", b"hi"),
            ("reports/deep/e2e.xml", b"<testsuite/>"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    files = report_files(buffer.getvalue(), "reports/*.xml", archived_path="reports")
    assert files == [("reports/unit.xml", b"<testsuite/>")]
    assert [
        path
        for path, _ in report_files(buffer.getvalue(), "reports/**.xml", archived_path="reports")
    ] == [
        "reports/deep/e2e.xml",
        "reports/unit.xml",
    ]


@pytest.mark.parametrize(
    ("pattern", "folder"),
    [
        ("reports/*.xml", "reports"),
        ("out/junit.xml", "out"),
        ("*.xml", "."),
        ("/app/r/*.xml", "/app/r"),
    ],
)
def test_the_folder_read_back_is_the_patterns_fixed_part(pattern: str, folder: str) -> None:
    assert archived_folder(pattern) == folder
