"""Repository URLs: which ones Dockyard clones, and one key per repository whatever its URL form.

Pure functions, no I/O. A forge names a repository in several ways (https clone URL, ssh URL,
scp-like `git@host:owner/name.git`, the legacy git:// URL); all of them map to the same key.
"""

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, unquote, urlsplit

REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
HOSTS_SETTING = "DOCKYARD_ALLOWED_REPOSITORY_HOSTS"
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_TRANSPORT_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")


class RepositoryURLError(ValueError):
    """A repository URL Dockyard refuses to clone, with the reason."""


def validate_repository_url(
    url: str, *, allow_local: bool, allowed_hosts: Sequence[str] = ("*",)
) -> None:
    """Refuse URLs that could run commands, read the server's disk or reach a host outside
    `allowed_hosts` (glob patterns over host names); say why."""
    if not url:
        raise RepositoryURLError("repository URL is empty")
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise RepositoryURLError(
            f"repository URL {shown(url)!r} contains spaces or control characters"
        )
    if url.startswith("-"):
        raise RepositoryURLError(
            f"repository URL {shown(url)!r} starts with '-' (it would be read as an option)"
        )
    if _TRANSPORT_PREFIX.match(url):
        raise RepositoryURLError(
            f"repository URL {shown(url)!r} uses a git remote helper ('::'), refused"
        )
    if _is_local(url):
        if not allow_local:
            raise RepositoryURLError(
                f"repository URL {url!r} is on this machine's disk; local repositories are "
                "refused unless DOCKYARD_ALLOW_LOCAL_REPOSITORIES=true"
            )
        path = url.removeprefix("file://")
        if not path.startswith("/"):
            raise RepositoryURLError(f"local repository {url!r} must be an absolute path")
        return
    parts = _split(url)
    if parts.scheme:
        if parts.scheme not in REMOTE_SCHEMES:
            raise RepositoryURLError(
                f"repository URL {shown(url)!r} uses {parts.scheme}://; use https://, ssh:// "
                "or git@host:path"
            )
        if not parts.hostname:
            raise RepositoryURLError(f"repository URL {shown(url)!r} names no host")
        host, user = parts.hostname, parts.username or ""
        if parts.scheme in {"ssh", "git"} and parts.password is not None:
            raise RepositoryURLError(
                f"repository URL {shown(url)!r} carries a password: git over ssh takes a key "
                "(the worker's ssh key), not a password"
            )
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            raise RepositoryURLError(
                f"repository URL {url!r} is not a URL: use https://host/owner/name.git or "
                "git@host:owner/name.git"
            )
        host, user = match["host"].lower(), match["user"] or ""
    # ssh reads a host or user starting with '-' as an option (-oProxyCommand=...).
    if host.startswith("-") or user.startswith("-"):
        raise RepositoryURLError(
            f"repository URL {shown(url)!r} has a host or user starting with '-', refused"
        )
    if not any(fnmatchcase(host, pattern) for pattern in allowed_hosts):
        raise RepositoryURLError(
            f"repository host {host!r} is not allowed: {HOSTS_SETTING} is "
            f"{' '.join(allowed_hosts)!r}"
        )


def shown(url: str) -> str:
    """The URL as logs and messages may show it: credentials in it are hidden.

    Over http(s) any user part is a credential (GitHub takes a token as the user name); over
    ssh the user is an account name (git@) and only a password is hidden.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    if parts.scheme in {"http", "https"}:
        userinfo = "***"
    elif parts.password is not None:
        userinfo = f"{parts.username}:***"
    return parts._replace(netloc=f"{userinfo}@{host}").geturl()


def split_credentials(url: str) -> tuple[str, str]:
    """(the URL without credentials, the credentials) of an http(s) URL.

    `https://user:token@host/x.git` gives `https://host/x.git` and "user:token"; a lone user
    part (GitHub takes a token as the user name) is a credential too. Other URLs come back as
    they are, with "": an ssh user is an account name, and ssh passwords are refused by
    validate_repository_url.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return url, ""
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, ""
    return parts._replace(netloc=host).geturl(), unquote(userinfo)


def repository_key(url: str) -> str:
    """The same key for every way of naming one repository, e.g. 'github.com/owner/name'."""
    if _is_local(url):
        return "file://" + url.removeprefix("file://").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme and parts.hostname:
        host, path = parts.hostname, parts.path
    else:
        match = _SCP_LIKE.match(url)
        if not match:
            return url.strip().lower()
        host, path = match["host"], match["path"]
    path = path.strip("/").removesuffix(".git").rstrip("/")
    # Forges treat owner and repository names case-insensitively.
    return f"{host.lower()}/{path.lower()}"


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsed lazily; a bad port or bracket raises here)
    except ValueError as error:
        raise RepositoryURLError(f"repository URL {shown(url)!r} is malformed: {error}") from None
    return parts


def _is_local(url: str) -> bool:
    return url.startswith("file://") or url.startswith("/") or url.startswith(".")
