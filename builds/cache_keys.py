"""Cache keys of base layers. Pure: the caller reads the files, these functions only hash.

A base layer is reused when its key is found, so the key must change whenever the image could:
its Dockerfile (ONBUILD lines included), every file of its build context with its mode, its
build arguments, the digest of the stack image it builds FROM, and the digests that the
images outside the stack it builds FROM (`FROM python:3.11`) resolved to.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Bump when the meaning of a key changes, so old cache entries are not taken for new ones.
KEY_VERSION = b"dockyard-base-layer-v1"


@dataclass(frozen=True)
class ContextFile:
    path: str
    mode: int
    content_digest: str


def base_layer_cache_key(
    *,
    dockerfile: bytes,
    context_files: Iterable[ContextFile],
    build_args: Mapping[str, str],
    parent_digest: str | None,
    upstream_digests: Mapping[str, str] | None = None,
) -> str:
    """A sha256 hex digest of everything that decides what the base layer contains."""
    key = hashlib.sha256(KEY_VERSION)

    def field(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            # Length-prefixed, so no two different inputs can run together into one.
            key.update(len(data).to_bytes(8, "big"))
            key.update(data)

    field("dockerfile", hashlib.sha256(dockerfile).digest())
    for file in sorted(context_files, key=lambda f: f.path):
        field("file", file.path, oct(file.mode), file.content_digest)
    for name in sorted(build_args):
        field("arg", name, build_args[name])
    field("parent", parent_digest or "")
    # Only bases that build on outside images have these: the keys of all others stay as
    # they were before outside images counted.
    for reference in sorted(upstream_digests or {}):
        field("upstream", reference, (upstream_digests or {})[reference])
    return key.hexdigest()
