"""Repository URLs: which ones Dockyard clones, and one key per repository whatever its URL form.

Pure functions, no I/O. A forge names a repository in several ways (https clone URL, ssh URL,
scp-like `git@host:owner/name.git`, the legacy git:// URL); all of them map to the same key.
"""

import re
from urllib.parse import urlsplit

REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_TRANSPORT_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")


class RepositoryURLError(ValueError):
    """A repository URL Dockyard refuses to clone, with the reason."""


def validate_repository_url(url: str, *, allow_local: bool) -> None:
    """Refuse URLs that could run commands or read the server's disk; say why."""
    if not url:
        raise RepositoryURLError("repository URL is empty")
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise RepositoryURLError(f"repository URL {url!r} contains spaces or control characters")
    if url.startswith("-"):
        raise RepositoryURLError(
            f"repository URL {url!r} starts with '-' (it would be read as an option)"
        )
    if _TRANSPORT_PREFIX.match(url):
        raise RepositoryURLError(f"repository URL {url!r} uses a git remote helper ('::'), refused")
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
    scheme = urlsplit(url).scheme
    if scheme:
        if scheme not in REMOTE_SCHEMES:
            raise RepositoryURLError(
                f"repository URL {url!r} uses {scheme}://; use https://, ssh:// or git@host:path"
            )
        if not urlsplit(url).hostname:
            raise RepositoryURLError(f"repository URL {url!r} names no host")
        return
    if not _SCP_LIKE.match(url):
        raise RepositoryURLError(
            f"repository URL {url!r} is not a URL: use https://host/owner/name.git or "
            "git@host:owner/name.git"
        )


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


def _is_local(url: str) -> bool:
    return url.startswith("file://") or url.startswith("/") or url.startswith(".")
