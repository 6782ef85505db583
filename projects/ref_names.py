"""Which ref names Dockyard accepts: those git itself accepts. Pure, no I/O.

The rules are git's own (`git check-ref-format`, and `--branch` for the short name), so a
branch or tag that git could never have made is refused at the edge rather than sanitised
into something that collides with a real one.
"""

import re

# Characters git refuses anywhere in a ref: controls, space, ~ ^ : ? * [ and backslash.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_REF_LENGTH = 255


def ref_name_problem(ref: str) -> str | None:
    """Why git would refuse the full ref name `ref` (refs/heads/x, refs/tags/v1), or None."""
    if not ref:
        return "is empty"
    if len(ref) > MAX_REF_LENGTH:
        return f"is longer than {MAX_REF_LENGTH} characters"
    if (found := _FORBIDDEN.search(ref)) is not None:
        return f"contains {found.group()!r}, which git refuses in a ref name"
    if ".." in ref:
        return "contains '..'"
    if "@{" in ref:
        return "contains '@{'"
    if ref == "@":
        return "is '@'"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "has an empty path component"
    if ref.endswith("."):
        return "ends with '.'"
    if "/" not in ref:
        return "has no '/' (expected refs/heads/<branch> or refs/tags/<tag>)"
    for component in ref.split("/"):
        if component.startswith("."):
            return f"has a component starting with '.' ({component!r})"
        if component.endswith(".lock"):
            return f"has a component ending with '.lock' ({component!r})"
    # `git check-ref-format --branch` refuses these short names: they read as options.
    short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    if short.startswith("-"):
        return f"names {short!r}, which starts with '-'"
    return None
