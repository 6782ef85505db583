"""What a Dockerfile builds FROM, and image references taken apart. Pure: text in, names out.

A base whose Dockerfile starts `FROM python:3.11` builds on an image outside the stack; its
cache key must change when that tag moves (a new OpenSSL), so the key takes the digest the
reference resolves to at build time (builds.upstream). This module only finds the references,
as Docker would read them: continuation lines joined, global ARGs (given values first, then
their defaults) substituted, `scratch` and earlier stages of a multi-stage file left out.
"""

import re
from collections.abc import Mapping

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_INSTRUCTION = re.compile(r"^\s*(?P<keyword>[A-Za-z]+)\s+(?P<rest>.*)$", re.DOTALL)


def external_parents(dockerfile: str, build_args: Mapping[str, str]) -> tuple[str, ...]:
    """The image references the Dockerfile's FROM lines name, outside the file itself."""
    arguments: dict[str, str] = {}
    stages: set[str] = set()
    parents: list[str] = []
    seen_from = False
    for instruction in _instructions(dockerfile):
        match = _INSTRUCTION.match(instruction)
        if match is None:
            continue
        keyword, rest = match["keyword"].upper(), match["rest"].strip()
        if keyword == "ARG" and not seen_from:
            # Only ARGs before the first FROM are visible to FROM lines.
            name, _, default = rest.partition("=")
            name = name.strip()
            arguments[name] = build_args.get(name, default.strip().strip('"').strip("'"))
        elif keyword == "FROM":
            seen_from = True
            words = [word for word in rest.split() if not word.startswith("--")]
            if not words:
                continue
            image = _substituted(words[0], arguments)
            named = len(words) >= 3 and words[1].upper() == "AS"
            if image.lower() not in {"", "scratch", *stages} and image not in parents:
                parents.append(image)
            if named:
                stages.add(words[2].lower())
    return tuple(parents)


def reference_parts(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) of an image reference; the tag defaults to "latest".

    `127.0.0.1:5000/infra/base:1` -> ("127.0.0.1:5000/infra/base", "1");
    `base@sha256:ab…` -> ("base", "sha256:ab…").
    """
    repository, at, digest = reference.partition("@")
    if at:
        return repository, digest
    last_slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > last_slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def _instructions(dockerfile: str) -> list[str]:
    """The file's instructions with continuation lines joined and comments dropped."""
    instructions: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        line = raw.rstrip()
        if not current and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            instructions.append(current)
        current = ""
    if current.strip():
        instructions.append(current)
    return instructions


def _substituted(word: str, arguments: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        current = arguments.get(name, "")
        if match["op"] == "-":
            return current or match["word"]
        if match["op"] == "+":
            return match["word"] if current else ""
        return current

    return _VARIABLE.sub(value, word)
