import pytest

from projects.trigger_rules import name_matches, parse_globs, push_refusal, skip_ci_requested


@pytest.mark.parametrize(
    ("text", "globs"),
    [
        ("*", ("*",)),
        ("main  release/*", ("main", "release/*")),
        ("a,b, c", ("a", "b", "c")),
        ("", ()),
    ],
)
def test_filters_are_space_or_comma_separated_globs(text: str, globs: tuple[str, ...]) -> None:
    assert parse_globs(text) == globs


@pytest.mark.parametrize(
    ("name", "matches"),
    [("main", True), ("release/1.2", True), ("release", False), ("feature/x", False)],
)
def test_names_match_globs(name: str, matches: bool) -> None:
    assert name_matches(name, ("main", "release/*")) is matches


@pytest.mark.parametrize(
    "message",
    ["Fix typo [skip ci]", "[ci skip] docs", "wip\n\n[SKIP CI]", "tidy [no ci]"],
)
def test_skip_ci_markers_are_honoured_anywhere_in_the_message(message: str) -> None:
    assert skip_ci_requested(message)


def test_an_ordinary_message_does_not_skip() -> None:
    assert not skip_ci_requested("skip the ci for docs? no")


def test_a_push_outside_the_branch_filter_is_refused_with_the_reason() -> None:
    reason = push_refusal(
        kind="branch",
        name="wip/x",
        commit_message="x",
        branch_filter="main release/*",
        tag_filter="*",
    )
    assert reason == "branch 'wip/x' matches none of the project's branch filters (main release/*)"


def test_tags_use_the_tag_filter() -> None:
    assert (
        push_refusal(
            kind="tag", name="v1.0", commit_message="", branch_filter="main", tag_filter="v*"
        )
        is None
    )
    assert push_refusal(
        kind="tag", name="nightly", commit_message="", branch_filter="*", tag_filter="v*"
    )


def test_skip_ci_wins_over_matching_filters() -> None:
    reason = push_refusal(
        kind="branch", name="main", commit_message="[skip ci]", branch_filter="*", tag_filter="*"
    )
    assert reason == "the head commit message asks to skip CI"
