"""Fixtures of the release tests."""

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.models import PipelineRun
from tests.factories import make_project, web_app_repo
from tests.releases.deployed_app import App


@pytest.fixture
def app(tmp_path: Path, celery_worker: str, pushed_run: Callable[..., PipelineRun]) -> App:
    repo = web_app_repo(tmp_path / "web")
    return App(repo, make_project(repository_url=repo.url), pushed_run)
