"""Which outside images a Dockerfile builds FROM, as Docker reads the file."""

import pytest

from builds.cache_keys import base_layer_cache_key
from builds.dockerfile import external_parents, reference_parts


def test_a_plain_from_is_an_outside_parent() -> None:
    assert external_parents("FROM python:3.11\nRUN true\n", {}) == ("python:3.11",)


def test_scratch_and_earlier_stages_are_not() -> None:
    dockerfile = """\
FROM golang:1.22 AS build
RUN go build
FROM scratch
COPY --from=build /app /app
FROM build AS test
"""
    assert external_parents(dockerfile, {}) == ("golang:1.22",)


def test_global_args_are_substituted_given_values_first() -> None:
    dockerfile = """\
# syntax comments and blank lines are skipped

ARG REGISTRY=127.0.0.1:5000
ARG VERSION="3.11"
FROM ${REGISTRY}/infra/python:$VERSION
ARG LATER=ignored
FROM --platform=linux/amd64 \\
    ${MISSING:-busybox}:1
"""
    assert external_parents(dockerfile, {"VERSION": "3.12"}) == (
        "127.0.0.1:5000/infra/python:3.12",
        "busybox:1",
    )


def test_a_stack_base_given_as_build_arg_is_found_pinned() -> None:
    dockerfile = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
    assert external_parents(dockerfile, {"BASE_IMAGE": "r/x/base@sha256:ab"}) == (
        "r/x/base@sha256:ab",
    )
    assert external_parents(dockerfile, {}) == ()


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("python:3.11", ("python", "3.11")),
        ("python", ("python", "latest")),
        ("127.0.0.1:5000/infra/base:1", ("127.0.0.1:5000/infra/base", "1")),
        ("127.0.0.1:5000/infra/base", ("127.0.0.1:5000/infra/base", "latest")),
        ("r/base@sha256:ab", ("r/base", "sha256:ab")),
    ],
)
def test_a_reference_splits_into_repository_and_tag(reference: str, parts: tuple[str, str]) -> None:
    assert reference_parts(reference) == parts


def test_the_cache_key_changes_when_an_outside_parent_moves_and_not_otherwise() -> None:
    def key(upstream: dict[str, str] | None) -> str:
        return base_layer_cache_key(
            dockerfile=b"FROM python:3.11\n",
            context_files=[],
            build_args={},
            parent_digest=None,
            upstream_digests=upstream,
        )

    assert key({"python:3.11": "sha256:1"}) != key({"python:3.11": "sha256:2"})
    assert key({"python:3.11": "sha256:1"}) == key({"python:3.11": "sha256:1"})
    # A base on nothing outside keeps the key it had before outside images counted.
    assert key(None) == key({})
