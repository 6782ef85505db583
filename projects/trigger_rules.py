"""Which pushes start runs: branch and tag filters, and "[skip ci]". Pure functions."""

import re
from fnmatch import fnmatchcase

# The spellings GitHub Actions, GitLab CI and Drone all honour.
_SKIP_CI = re.compile(r"\[(?:skip ci|ci skip|no ci|skip actions|actions skip)\]", re.IGNORECASE)


def parse_globs(text: str) -> tuple[str, ...]:
    """'main release/*' -> ('main', 'release/*'); commas work as separators too."""
    return tuple(glob for glob in re.split(r"[\s,]+", text.strip()) if glob)


def name_matches(name: str, globs: tuple[str, ...]) -> bool:
    """True when `name` matches any glob; `*` spans slashes, so `release/*` takes `release/1.2`."""
    return any(fnmatchcase(name, glob) for glob in globs)


def skip_ci_requested(commit_message: str) -> bool:
    return bool(_SKIP_CI.search(commit_message))


def push_refusal(
    *, kind: str, name: str, commit_message: str, branch_filter: str, tag_filter: str
) -> str | None:
    """Why a push of branch or tag `name` starts no run, or None when it does."""
    if skip_ci_requested(commit_message):
        return "the head commit message asks to skip CI"
    globs = parse_globs(branch_filter if kind == "branch" else tag_filter)
    if not name_matches(name, globs):
        filters = " ".join(globs) or "none"
        return f"{kind} {name!r} matches none of the project's {kind} filters ({filters})"
    return None
