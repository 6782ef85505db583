"""The git adapter: a mirror per repository, fetched and never re-cloned, and exports of commits.

Dockyard's one adapter to git: through GitPython, and `git archive` straight into a file. Its
errors become GitCheckoutError.
"""

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import git
from django.conf import settings
from git.exc import GitError

from infrastructure.repository_urls import RepositoryURLError, shown, validate_repository_url

# Never wait for a password on a terminal that nobody watches.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "SSH_ASKPASS": "/bin/true"}
# The transports git may use, whatever a URL, a redirect or a submodule asks for: never ext::
# (runs a command) or fd::, and file only where local repositories are allowed.
_REMOTE_PROTOCOLS = ("https", "http", "ssh", "git")
GIT_TIMEOUT_SECONDS = 600
# Asked by git for credentials ("get"), it prints the ones in its environment.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
    '"$DOCKYARD_GIT_USERNAME" "$DOCKYARD_GIT_PASSWORD"; }; f'
)
# The commit's id, author's name and email and raw message, apart by NULs (none can hold one).
_COMMIT_INFO_FORMAT = "%H%x00%an%x00%ae%x00%B"
_COMMIT_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# What a branch or tag name may be here: no "..", no option-like or control characters.
_FULL_REF = re.compile(r"^refs/(?:heads|tags)/(?!.*\.\.)[A-Za-z0-9._/-]+$")


class GitCheckoutError(Exception):
    """Cloning, fetching or exporting failed; the message says which and why."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str
    author: str


def mirror_fetch(*, url: str, mirror_dir: Path, commit_sha: str, credentials: str = "") -> None:
    """Make sure `mirror_dir` is a mirror of `url` that holds `commit_sha`.

    `credentials` ("user:password", or a token) are handed to git for this command only,
    through a credential helper reading the environment: never in the URL, the mirror's
    config or git's command line.
    """
    if not _COMMIT_SHA.match(commit_sha):
        raise GitCheckoutError(f"{commit_sha!r} is not a full commit id")
    with _mirror(url, mirror_dir, credentials) as repo:
        try:
            if not _has_commit(repo, commit_sha):
                repo.git.fetch("--prune", "origin", kill_after_timeout=GIT_TIMEOUT_SECONDS)
            if not _has_commit(repo, commit_sha):
                # Not on any ref (a force-pushed branch, a pull request head): forges let a
                # client fetch a reachable commit by its id.
                with suppress(GitError):
                    repo.git.fetch("origin", commit_sha, kill_after_timeout=GIT_TIMEOUT_SECONDS)
            if not _has_commit(repo, commit_sha):
                raise GitCheckoutError(f"commit {commit_sha} is not in {shown(url)}")
        except GitError as error:
            raise GitCheckoutError(f"fetching {shown(url)} failed: {_describe(error)}") from None


def ref_head(*, url: str, mirror_dir: Path, ref: str, credentials: str = "") -> str:
    """The commit a full ref (refs/heads/main, refs/tags/v1) of `url` points at now."""
    if not _FULL_REF.match(ref):
        raise GitCheckoutError(f"{ref!r} is not a branch or tag ref")
    with _mirror(url, mirror_dir, credentials) as repo:
        try:
            repo.git.fetch("--prune", "origin", kill_after_timeout=GIT_TIMEOUT_SECONDS)
            return str(repo.git.rev_parse("--verify", "--end-of-options", f"{ref}^{{commit}}"))
        except GitError:
            raise GitCheckoutError(f"{shown(url)} has no {ref}") from None


@contextmanager
def _mirror(url: str, mirror_dir: Path, credentials: str) -> Iterator[git.Repo]:
    """The mirror of `url`, cloned when absent; held under an exclusive lock.

    The URL is checked here again, right before git sees it: whatever stored it (an old
    project, the admin, a tightened allowlist), a refused URL never reaches git.
    """
    try:
        validate_repository_url(
            url,
            allow_local=settings.DOCKYARD_ALLOW_LOCAL_REPOSITORIES,
            allowed_hosts=settings.DOCKYARD_ALLOWED_REPOSITORY_HOSTS,
        )
    except RepositoryURLError as error:
        raise GitCheckoutError(f"refusing to fetch: {error}") from None
    env = _git_env(credentials)
    mirror_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(mirror_dir, exclusive=True):
        try:
            if not (mirror_dir / "HEAD").exists():
                # GitPython puts "--" before the URL and refuses option-like arguments.
                git.Repo.clone_from(
                    url,
                    mirror_dir,
                    mirror=True,
                    env=env,
                    kill_after_timeout=GIT_TIMEOUT_SECONDS,
                ).close()
            repo = git.Repo(mirror_dir)
        except GitError as error:
            raise GitCheckoutError(f"fetching {shown(url)} failed: {_describe(error)}") from None
        try:
            repo.git.update_environment(**env)
            if repo.remote("origin").url != url:
                repo.git.remote("set-url", "origin", "--", url)
            yield repo
        finally:
            repo.close()


def export_commit(*, mirror_dir: Path, commit_sha: str, destination: Path) -> CommitInfo:
    """Write the tree of `commit_sha` into `destination`, without any .git folder.

    Two git processes: one says who wrote the commit and why, one writes its tree as a tar
    straight into a file. (GitPython's commit objects start two cat-file processes of their
    own, and its archive copies git's output through Python 8 KiB at a time: a third of this
    export on a repository holding a 2 MB binary.)
    """
    if not _COMMIT_SHA.match(commit_sha):
        raise GitCheckoutError(f"{commit_sha!r} is not a full commit id")
    with _locked(mirror_dir, exclusive=False):
        try:
            with git.Repo(mirror_dir) as repo:
                shown_commit = repo.git.show(
                    "-s",
                    "--no-show-signature",
                    f"--format={_COMMIT_INFO_FORMAT}",
                    f"{commit_sha}^{{commit}}",
                    "--",
                    stdout_as_string=False,
                    strip_newline_in_stdout=False,
                )
                # git converts a message to UTF-8 where it can (a Latin-1 one without an
                # encoding header comes out readable); whatever bytes are left that are not
                # UTF-8 are replaced, as GitPython did: the message is stored as text.
                info = commit_info_parse(shown_commit.decode(errors="replace"))
            destination.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile() as archive:
                _archive_write(mirror_dir, info.sha, archive)
                archive.seek(0)
                with tarfile.open(fileobj=archive) as tar:
                    links = _symbolic_links(tar)
                    # The "data" filter refuses members that would land outside the
                    # destination (absolute paths, "..", links pointing out).
                    tar.extractall(destination, filter="data")
            _refuse_links_leading_out(destination, links)
        except (GitError, ValueError) as error:
            raise GitCheckoutError(f"exporting {commit_sha} failed: {_describe(error)}") from None
        except tarfile.TarError as error:
            # Nothing of a refused tree stays behind for a later build to follow.
            shutil.rmtree(destination, ignore_errors=True)
            raise GitCheckoutError(
                f"commit {commit_sha} has a path Dockyard refuses: {error}"
            ) from None
    return info


def commit_info_parse(shown_commit: str) -> CommitInfo:
    """The CommitInfo in what `git show -s --format=_COMMIT_INFO_FORMAT` printed."""
    sha, name, email, message = shown_commit.split("\0", 3)
    if not _COMMIT_SHA.match(sha):
        raise ValueError(f"git named the commit {sha!r}")
    return CommitInfo(sha=sha, message=message, author=f"{name} <{email}>")


def _archive_write(mirror_dir: Path, commit_sha: str, archive: IO[bytes]) -> None:
    """`git archive` of the commit's tree, its output straight into `archive`."""
    try:
        subprocess.run(
            ["git", "archive", "--format=tar", commit_sha],
            cwd=mirror_dir,
            env={**os.environ, **_GIT_ENV},
            stdout=archive,
            stderr=subprocess.PIPE,
            timeout=GIT_TIMEOUT_SECONDS,
            check=True,
        )
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.decode(errors="replace").strip()
        raise ValueError(stderr or f"git archive exited with {error.returncode}") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"git archive took longer than {GIT_TIMEOUT_SECONDS} s") from None


def _git_env(credentials: str) -> dict[str, str]:
    protocols = list(_REMOTE_PROTOCOLS)
    if settings.DOCKYARD_ALLOW_LOCAL_REPOSITORIES:
        protocols.append("file")
    username, _, password = credentials.partition(":")
    return {
        **_GIT_ENV,
        "GIT_ALLOW_PROTOCOL": ":".join(protocols),
        # Configuration through the environment (git >= 2.31): the first entry empties the
        # list of helpers (none of the machine's own), the second answers from two variables
        # of this command's environment. Without credentials it answers nothing.
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": _CREDENTIAL_HELPER if credentials else "",
        "DOCKYARD_GIT_USERNAME": username,
        "DOCKYARD_GIT_PASSWORD": password,
    }


def _symbolic_links(tar: tarfile.TarFile) -> set[PurePosixPath]:
    """The archive's symbolic links; refuses one that writes through its own links, or holds
    hard links.

    git never makes such an archive from a real tree, but the "data" filter checks each member
    against the disk as extracted so far, and known bypasses (CVE-2025-4517 and its kin, not
    fixed in every Python 3.11) chain links so that a later member lands outside.
    """
    links: set[PurePosixPath] = set()
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        if member.islnk():
            raise tarfile.TarError(f"{member.name!r} is a hard link")
        if any(parent in links for parent in path.parents):
            raise tarfile.TarError(f"{member.name!r} lies under a symbolic link")
        if member.issym():
            links.add(path)
    return links


def _refuse_links_leading_out(destination: Path, links: set[PurePosixPath]) -> None:
    """Refuse an export with a symbolic link that resolves outside it, through any chain.

    Checked on the finished tree, where every link of a chain exists: a build that followed
    such a link (a Dockerfile, a context, a .dockerignore) would read the worker's own files.
    """
    root = destination.resolve()
    for link in sorted(links):
        path = destination / link
        try:
            target = path.resolve(strict=False)
        except (OSError, RuntimeError):
            raise tarfile.TarError(f"{str(link)!r} is a link loop") from None
        if not target.is_relative_to(root):
            outside = os.readlink(path)
            raise tarfile.TarError(
                f"{str(link)!r} is a link leading out of the repository (to {outside!r})"
            )


def _has_commit(repo: git.Repo, sha: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{sha}^{{commit}}")
    except GitError:
        return False
    return True


@contextmanager
def _locked(mirror_dir: Path, *, exclusive: bool) -> Iterator[None]:
    # Workers on one host share the mirror: one fetches while the others wait.
    lock_path = mirror_dir.with_name(mirror_dir.name + ".lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _describe(error: Exception) -> str:
    if isinstance(error, git.GitCommandError):
        stderr = (error.stderr or "").strip().removeprefix("stderr:").strip().strip("'").strip()
        return stderr or f"git exited with {error.status}"
    return str(error)
