"""What the pages are told: links to commits, and a failure read from the stored log."""

import pytest

from tests.factories import make_project, make_run_in_state
from web.selectors import commit_url, run_failure

pytestmark = pytest.mark.django_db

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("forge", "repository_url", "link"),
    [
        ("github", "https://github.com/Acme/Web.git", f"https://github.com/acme/web/commit/{SHA}"),
        ("github", "git@github.com:acme/web.git", f"https://github.com/acme/web/commit/{SHA}"),
        (
            "gitlab",
            "https://gitlab.example.com/group/sub/web.git",
            f"https://gitlab.example.com/group/sub/web/-/commit/{SHA}",
        ),
    ],
)
def test_a_commit_links_to_its_page_on_the_forge(
    forge: str, repository_url: str, link: str
) -> None:
    project = make_project(forge=forge, repository_url=repository_url)
    assert commit_url(project, SHA) == link


def test_a_repository_with_no_forge_pages_links_nowhere() -> None:
    project = make_project(repository_url="http://127.0.0.1:9418/web.git")
    assert commit_url(project, SHA) == ""


def test_a_run_that_failed_outside_its_stages_shows_the_end_of_its_log() -> None:
    run = make_run_in_state(
        make_project(),
        status="failed",
        failure_reason="the worker running it was lost for good",
        log=[("checkout", "cloned\n"), ("build", "step 1\nstep 2\n\n")],
    )
    failure = run_failure(run)
    assert failure is not None and failure.stage == ""
    assert [line.text for line in failure.last_lines] == ["cloned", "step 1", "step 2"]
    assert failure.error_line is not None and failure.error_line.number == 3


def test_a_run_that_did_not_fail_has_no_failure() -> None:
    assert run_failure(make_run_in_state(make_project(), log=[("test", "error: x\n")])) is None
