"""What the benchmarks play besides Dockyard: a developer's git and GitHub's signed pushes."""

import json
import subprocess
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

from webhooks.signatures import github_signature


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@dockyard.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def signed_push(*, server: str, secret: str, repo: Path, sha: str) -> int:
    """POST a signed GitHub push of `sha` to main; returns the id of the run it queued."""
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"clone_url": str(repo)},
            "head_commit": {"id": sha, "message": "bench"},
        }
    ).encode()
    request = Request(
        f"{server}/webhooks/github/",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": github_signature(secret=secret, body=body),
        },
    )
    with urlopen(request, timeout=30) as response:
        run_url: str = json.load(response)["run"]
    return int(run_url.rstrip("/").rsplit("/", 1)[1])
