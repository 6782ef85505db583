"""The tags an image is published under, rendered from dockyard.yml's templates. Pure."""

import re

_INVALID_TAG_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_TAG_LENGTH = 128


def sanitise_tag(value: str) -> str:
    """A valid Docker tag for a branch or tag name: `feature/login` becomes `feature-login`."""
    tag = _INVALID_TAG_CHARACTERS.sub("-", value)
    # A tag may not start with "." or "-".
    tag = tag.lstrip(".-")
    return tag[:MAX_TAG_LENGTH]


def ref_scoped(template: str) -> bool:
    """Does the template name the ref ({branch}, {tag}), so that each ref has a tag of its own?"""
    return "{branch}" in template or "{tag}" in template


def render_tags(
    templates: tuple[str, ...], *, commit_sha: str, ref: str, run_number: int
) -> list[str]:
    """Each template with {sha} {short_sha} {branch} {tag} {run} filled in.

    A template that needs a value the push does not have ({tag} on a branch push) is left out,
    as are duplicates.
    """
    values = {
        "sha": commit_sha,
        "short_sha": commit_sha[:12],
        "branch": sanitise_tag(ref.removeprefix("refs/heads/"))
        if ref.startswith("refs/heads/")
        else "",
        "tag": sanitise_tag(ref.removeprefix("refs/tags/")) if ref.startswith("refs/tags/") else "",
        "run": str(run_number),
    }
    tags: list[str] = []
    for template in templates:
        needed = re.findall(r"{(\w+)}", template)
        if any(not values.get(name) for name in needed):
            continue
        tag = sanitise_tag(template.format(**values))
        if tag and tag not in tags:
            tags.append(tag)
    return tags
