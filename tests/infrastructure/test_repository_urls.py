import pytest

from infrastructure.repository_urls import (
    RepositoryURLError,
    repository_key,
    shown,
    validate_repository_url,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/Web.git",
        "https://github.com/acme/web",
        "http://github.com/acme/web/",
        "git@github.com:acme/web.git",
        "ssh://git@github.com/acme/web.git",
        "git://github.com/acme/web.git",
    ],
)
def test_every_form_of_a_repository_url_has_the_same_key(url: str) -> None:
    assert repository_key(url) == "github.com/acme/web"


def test_a_local_path_and_its_file_url_have_the_same_key() -> None:
    assert repository_key("/srv/git/web/") == repository_key("file:///srv/git/web")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("--upload-pack=/tmp/pwned.sh", "starts with '-'"),
        ("ext::/tmp/pwned.sh", "remote helper"),
        ("file:///etc", "local repositories are refused"),
        ("/srv/git/web", "local repositories are refused"),
        ("ftp://example.com/web.git", "uses ftp://"),
        ("https://", "names no host"),
        ("https://github.com/acme/web.git\n", "control characters"),
        ("", "empty"),
        ("web", "not a URL"),
    ],
)
def test_dangerous_or_unknown_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(RepositoryURLError, match=why):
        validate_repository_url(url, allow_local=False)


def test_local_repositories_are_accepted_only_when_allowed_and_absolute() -> None:
    validate_repository_url("/srv/git/web", allow_local=True)
    validate_repository_url("file:///srv/git/web", allow_local=True)
    with pytest.raises(RepositoryURLError, match="absolute path"):
        validate_repository_url("./web", allow_local=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/web.git",
        "git@gitlab.example.com:group/sub/web.git",
        "ssh://git@h/x",
    ],
)
def test_ordinary_remote_urls_are_accepted(url: str) -> None:
    validate_repository_url(url, allow_local=False)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://github.com/acme/web.git", True),
        ("https://GITHUB.COM/acme/web.git", True),
        ("git@gitlab.example.org:group/web.git", True),
        ("ssh://git@deep.gitlab.example.org/group/web.git", True),
        ("https://example.org/acme/web.git", False),
        ("https://github.com.evil.example/acme/web.git", False),
        ("https://evil.example/github.com/acme/web.git", False),
    ],
)
def test_only_hosts_matching_the_allowlist_are_accepted(url: str, allowed: bool) -> None:
    hosts = ["github.com", "*.example.org"]
    if allowed:
        validate_repository_url(url, allow_local=False, allowed_hosts=hosts)
    else:
        with pytest.raises(RepositoryURLError, match="DOCKYARD_ALLOWED_REPOSITORY_HOSTS"):
            validate_repository_url(url, allow_local=False, allowed_hosts=hosts)


def test_local_repositories_are_governed_by_their_own_setting_not_the_host_allowlist() -> None:
    validate_repository_url("/srv/git/web", allow_local=True, allowed_hosts=["github.com"])


@pytest.mark.parametrize(
    ("url", "shown_as"),
    [
        ("https://ghp_token@github.com/acme/web.git", "https://***@github.com/acme/web.git"),
        ("https://user:pass@github.com/acme/web.git", "https://***@github.com/acme/web.git"),
        ("ssh://git:pass@github.com/acme/web.git", "ssh://git:***@github.com/acme/web.git"),
        ("ssh://git@github.com/acme/web.git", "ssh://git@github.com/acme/web.git"),
        ("git@github.com:acme/web.git", "git@github.com:acme/web.git"),
        ("https://github.com/acme/web.git", "https://github.com/acme/web.git"),
    ],
)
def test_credentials_in_a_url_are_hidden_where_it_is_shown(url: str, shown_as: str) -> None:
    assert shown(url) == shown_as
