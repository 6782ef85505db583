"""The deployable app of tests/factories.py with a page that prints what it is asked to: what
the app log tests watch for."""

from collections.abc import Callable
from pathlib import Path

import requests

from pipelines.models import PipelineRun
from releases.models import Environment
from tests.factories import make_project, web_app_repo
from tests.releases.deployed_app import App

# /cgi-bin/say?some+words prints "said some words" on the container's stdout (httpd's, process
# 1: a CGI script's own stdout is the response), then "warned some words" on its stderr (httpd's,
# inherited). The engine reads the two streams apart: lines written in the same instant could
# come either way.
SAY_SCRIPT = """\
#!/bin/sh
words=$(echo "$QUERY_STRING" | tr + ' ')
echo "said $words" > /proc/1/fd/1
sleep 0.05
echo "warned $words" >&2
echo "Content-Type: text/plain"
echo
echo ok
"""


def talking_app(path: Path, pushed_run: Callable[..., PipelineRun]) -> App:
    """The app, not released yet; each release of it has /cgi-bin/say."""
    repo = web_app_repo(path)
    repo.write("www/cgi-bin/say", SAY_SCRIPT)
    (repo.path / "www" / "cgi-bin" / "say").chmod(0o755)
    return App(repo, make_project(repository_url=repo.url), pushed_run)


def say(environment: Environment, words: str) -> None:
    """Have the app print `words` on both streams (through the environment's proxy)."""
    answer = requests.get(f"{environment.frontend_url}cgi-bin/say?{words}", timeout=5)
    assert answer.text.strip() == "ok", answer.text
