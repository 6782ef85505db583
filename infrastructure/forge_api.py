"""The forge adapter: tell GitHub or GitLab how a commit's run went (commit statuses).

The only module that calls the forges' APIs. Its errors become ForgeAPIError. The API base URL
is per project, so GitHub Enterprise, self-managed GitLab and a test server all work.
"""

from dataclasses import dataclass
from urllib.parse import quote

import requests

TIMEOUT_SECONDS = 10
STATUS_CONTEXT = "dockyard"
DEFAULT_API_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}

# Dockyard's run states in each forge's words. GitHub has no "running" or "cancelled".
_GITHUB_STATES = {
    "queued": "pending",
    "running": "pending",
    "succeeded": "success",
    "failed": "failure",
    "cancelled": "error",
}
_GITLAB_STATES = {
    "queued": "pending",
    "running": "running",
    "succeeded": "success",
    "failed": "failed",
    "cancelled": "canceled",
}


class ForgeAPIError(Exception):
    """The forge could not be reached or refused the call; worth retrying later."""


@dataclass(frozen=True)
class CommitStatus:
    commit_sha: str
    run_state: str
    target_url: str
    description: str
    ref: str = ""


def commit_status_send(
    *, forge: str, api_url: str, repository: str, token: str, status: CommitStatus
) -> str:
    """Set the commit's status on the forge; returns the forge's word for the state sent."""
    base = (api_url or DEFAULT_API_URLS[forge]).rstrip("/")
    if forge == "github":
        state = _GITHUB_STATES[status.run_state]
        url = f"{base}/repos/{repository}/statuses/{status.commit_sha}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        body = {
            "state": state,
            "target_url": status.target_url,
            "description": status.description[:140],
            "context": STATUS_CONTEXT,
        }
    else:
        state = _GITLAB_STATES[status.run_state]
        # A GitLab project is named by its id or its URL-encoded path ("group/sub/app").
        url = f"{base}/projects/{quote(repository, safe='')}/statuses/{status.commit_sha}"
        headers = {"PRIVATE-TOKEN": token}
        body = {
            "state": state,
            "target_url": status.target_url,
            "description": status.description[:255],
            "name": STATUS_CONTEXT,
        }
        if status.ref:
            body["ref"] = status.ref
    try:
        response = requests.post(url, json=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise ForgeAPIError(f"{forge} at {base} unreachable: {type(error).__name__}") from None
    if response.status_code >= 300:
        # The body may echo what we sent, never the token; still, keep it short.
        raise ForgeAPIError(f"{forge} answered {response.status_code}: {response.text[:200]}")
    return state
