import pytest

from builds.image_tags import render_tags, sanitise_tag

SHA = "0123456789abcdef0123456789abcdef01234567"
DEFAULT = ("{sha}", "{branch}", "{tag}")


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("main", "main"),
        ("feature/login", "feature-login"),
        ("-weird..name", "weird..name"),
        ("release@2025!", "release-2025-"),
        ("x" * 200, "x" * 128),
    ],
)
def test_branch_names_become_valid_docker_tags(name: str, tag: str) -> None:
    assert sanitise_tag(name) == tag


def test_a_branch_push_gets_the_sha_and_the_branch() -> None:
    assert render_tags(DEFAULT, commit_sha=SHA, ref="refs/heads/feature/x", run_number=3) == [
        SHA,
        "feature-x",
    ]


def test_a_tag_push_gets_the_sha_and_the_tag() -> None:
    assert render_tags(DEFAULT, commit_sha=SHA, ref="refs/tags/v1.0.0", run_number=3) == [
        SHA,
        "v1.0.0",
    ]


def test_templates_combine_placeholders_and_drop_duplicates() -> None:
    templates = ("{branch}-{short_sha}", "run-{run}", "{branch}-{short_sha}", "latest")
    assert render_tags(templates, commit_sha=SHA, ref="refs/heads/main", run_number=7) == [
        f"main-{SHA[:12]}",
        "run-7",
        "latest",
    ]
