"""Ref names: Dockyard accepts exactly what git accepts (and no option-like short name)."""

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projects.ref_names import ref_name_problem


def git_accepts(ref: str) -> bool:
    completed = subprocess.run(["git", "check-ref-format", ref], capture_output=True, check=False)
    return completed.returncode == 0


@pytest.mark.parametrize(
    "ref",
    [
        "refs/heads/main",
        "refs/heads/feature/login",
        "refs/tags/v1.2.3",
        "refs/heads/release-2024.10",
        "refs/heads/ünïcode",
        "refs/heads/a@b",
    ],
)
def test_it_accepts_names_git_accepts(ref: str) -> None:
    assert git_accepts(ref)
    assert ref_name_problem(ref) is None


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("refs/heads/../../x", "contains '..'"),
        ("refs/heads/-fx:y", "contains ':'"),
        ("refs/heads/-fx", "starts with '-'"),
        ("refs/tags/-v1", "starts with '-'"),
        ("refs/heads/x.lock", "ending with '.lock'"),
        ("refs/heads/.hidden", "starting with '.'"),
        ("refs/heads/a//b", "empty path component"),
        ("refs/heads/a/", "empty path component"),
        ("refs/heads/a.", "ends with '.'"),
        ("refs/heads/a@{1}", "contains '@{'"),
        ("refs/heads/a b", "contains ' '"),
        ("refs/heads/a~1", "contains '~'"),
        ("refs/heads/a^", "contains '^'"),
        ("refs/heads/a?", "contains '?'"),
        ("refs/heads/a*", "contains '*'"),
        ("refs/heads/a[b", "contains '['"),
        ("refs/heads/a\\b", "contains '\\\\'"),
        ("refs/heads/a\x00b", "contains '\\x00'"),
        ("refs/heads/a\x7fb", "contains '\\x7f'"),
        ("@", "is '@'"),
        ("", "is empty"),
        ("main", "has no '/'"),
        ("refs/heads/" + "x" * 300, "longer than 255"),
    ],
)
def test_it_refuses_names_git_refuses_naming_why(ref: str, problem: str) -> None:
    assert problem in (ref_name_problem(ref) or "")


_REF_CHARACTERS = st.sampled_from([*"ab./-_@{}~^:?*[ \\\x01\x7f", "lock", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_REF_CHARACTERS, min_size=1, max_size=12).map("".join))
def test_it_agrees_with_git_check_ref_format(name: str) -> None:
    ref = f"refs/heads/{name}"
    if "\x00" in ref:
        return  # cannot be passed to git as an argument at all
    expected = git_accepts(ref) and not name.startswith("-")
    assert (ref_name_problem(ref) is None) == expected, ref
