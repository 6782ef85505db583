"""The git adapter against real repositories."""

import os
from pathlib import Path

import pytest

from infrastructure.git_checkout import (
    GitCheckoutError,
    commit_info_parse,
    export_commit,
    mirror_fetch,
)
from tests.factories import GitRepo


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "origin")


def test_a_commit_is_exported_without_any_git_folder(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("Dockerfile", "FROM scratch\n")
    repo.write("src/app.sh", "echo hi\n")
    (repo.path / "src" / "app.sh").chmod(0o755)
    sha = repo.commit("first")
    mirror, out = tmp_path / "mirror.git", tmp_path / "out"

    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=sha)
    info = export_commit(mirror_dir=mirror, commit_sha=sha, destination=out)

    assert info.sha == sha and info.message.strip() == "first"
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert os.access(out / "src" / "app.sh", os.X_OK)
    assert not (out / ".git").exists()


def test_an_export_says_who_wrote_the_commit_and_its_whole_message(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.write("a.txt", "one\n")
    repo.git("add", "--all")
    repo.git(
        "-c",
        "user.name=Zoë Ångström",
        "-c",
        "user.email=zoe@example.invalid",
        "commit",
        "--quiet",
        "-m",
        "Fix the greeting\n\nIt said hello twice.",
    )
    sha = repo.git("rev-parse", "HEAD")
    mirror = tmp_path / "mirror.git"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=sha)

    info = export_commit(mirror_dir=mirror, commit_sha=sha, destination=tmp_path / "out")

    assert info.sha == sha
    assert info.author == "Zoë Ångström <zoe@example.invalid>"
    assert info.message.strip() == "Fix the greeting\n\nIt said hello twice."


def test_a_commit_message_in_latin1_without_an_encoding_header_is_exported_as_text(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.write("a.txt", "one\n")
    (tmp_path / "message").write_bytes(b"Caf\xe9 au lait\n")  # Latin-1, no encoding header
    repo.git("add", "--all")
    repo.git("commit", "--quiet", "-F", str(tmp_path / "message"))
    sha = repo.git("rev-parse", "HEAD")
    mirror = tmp_path / "mirror.git"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=sha)

    info = export_commit(mirror_dir=mirror, commit_sha=sha, destination=tmp_path / "out")

    assert info.message.strip() == "Café au lait"
    assert (tmp_path / "out" / "a.txt").read_text() == "one\n"


def test_an_export_of_something_not_a_commit_id_is_refused(repo: GitRepo, tmp_path: Path) -> None:
    sha = repo.commit("only")
    mirror = tmp_path / "mirror.git"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=sha)
    with pytest.raises(GitCheckoutError, match="'--output=/tmp/x' is not a full commit id"):
        export_commit(mirror_dir=mirror, commit_sha="--output=/tmp/x", destination=tmp_path / "o")
    with pytest.raises(GitCheckoutError, match=f"exporting {'3' * 40} failed"):
        export_commit(mirror_dir=mirror, commit_sha="3" * 40, destination=tmp_path / "o")


def test_what_git_shows_of_a_commit_is_read_into_its_info() -> None:
    info = commit_info_parse(f"{'a' * 40}\0Ann\0ann@x.invalid\0subject\n\nbody\n")
    assert info.sha == "a" * 40
    assert info.author == "Ann <ann@x.invalid>"
    assert info.message == "subject\n\nbody\n"
    with pytest.raises(ValueError, match="named the commit"):
        commit_info_parse("fatal: bad object\0\0\0")


def test_the_mirror_is_fetched_not_cloned_again(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("a.txt", "one\n")
    first = repo.commit("one")
    mirror = tmp_path / "mirror.git"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=first)
    marker = mirror / "dockyard-test-marker"
    marker.write_text("still the same mirror")

    repo.write("a.txt", "two\n")
    second = repo.commit("two")
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=second)
    export_commit(mirror_dir=mirror, commit_sha=second, destination=tmp_path / "out")

    assert marker.exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "two\n"


def test_an_older_commit_is_exported_exactly(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("a.txt", "one\n")
    first = repo.commit("one")
    repo.write("a.txt", "two\n")
    repo.commit("two")
    mirror = tmp_path / "mirror.git"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=first)
    export_commit(mirror_dir=mirror, commit_sha=first, destination=tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "one\n"


def test_a_commit_the_repository_does_not_have_is_an_error_naming_it(
    repo: GitRepo, tmp_path: Path
) -> None:
    repo.commit("only")
    missing = "1" * 40
    with pytest.raises(GitCheckoutError, match=f"commit {missing} is not in"):
        mirror_fetch(url=repo.url, mirror_dir=tmp_path / "mirror.git", commit_sha=missing)


def test_an_unreachable_repository_is_an_error_saying_why(tmp_path: Path) -> None:
    with pytest.raises(GitCheckoutError, match=r"fetching .* failed"):
        mirror_fetch(
            url=str(tmp_path / "nowhere"), mirror_dir=tmp_path / "mirror.git", commit_sha="2" * 40
        )


def test_a_symlink_pointing_out_of_the_repository_is_refused(repo: GitRepo, tmp_path: Path) -> None:
    (repo.path / "passwd").symlink_to("/etc/passwd")
    sha = repo.commit("sneaky")
    mirror, out = tmp_path / "mirror.git", tmp_path / "out"
    mirror_fetch(url=repo.url, mirror_dir=mirror, commit_sha=sha)
    with pytest.raises(GitCheckoutError, match="refuses"):
        export_commit(mirror_dir=mirror, commit_sha=sha, destination=out)
    assert not (out / "passwd").exists()
