"""A deployable app pushed, built, released and deployed for real: what the deployment tests
drive (the `app` fixture is in this package's conftest)."""

import time
from collections.abc import Callable

import requests

from pipelines.models import PipelineRun
from pipelines.states import RunStatus
from projects.models import Project
from releases.models import Deployment, Environment, Release
from releases.states import DEPLOYMENT_FINAL_STATES
from tests.factories import GitRepo, web_app_version


def wait_for_deployment(deployment: Deployment, timeout: float = 120) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.status in DEPLOYMENT_FINAL_STATES:
            return deployment
        time.sleep(0.05)
    raise AssertionError(f"deployment {deployment.pk} still {deployment.status}")


def steps(deployment: Deployment, *, on_host: bool = False) -> list[str]:
    events = deployment.events.filter(host__isnull=not on_host).order_by("pk")
    return list(events.values_list("to_status", flat=True))


def address(environment: Environment) -> str:
    [host] = environment.hosts.all()
    return host.address


def served(environment: Environment) -> str:
    return requests.get(environment.frontend_url, timeout=5).text.strip()


class App:
    """A project whose pushes to main are built, released and auto-deployed to staging."""

    def __init__(self, repo: GitRepo, project: Project, pushed_run: Callable[..., PipelineRun]):
        self.repo, self.project, self._pushed_run = repo, project, pushed_run

    def release(self, version: str, *, healthy: bool = True, error_percent: int = 0) -> Release:
        sha = web_app_version(self.repo, version, healthy=healthy, error_percent=error_percent)
        run = self._pushed_run(self.project, sha)
        assert run.status == RunStatus.SUCCEEDED, run.failure_reason
        deadline = time.monotonic() + 60
        while not Release.objects.filter(run=run).exists():
            assert time.monotonic() < deadline, "no release was made"
            time.sleep(0.05)
        return Release.objects.get(run=run)

    def environment(self, name: str) -> Environment:
        return Environment.objects.get(project=self.project, name=name)

    def auto_deployment(self, release: Release) -> Deployment:
        deadline = time.monotonic() + 60
        while not Deployment.objects.filter(release=release).exists():
            assert time.monotonic() < deadline, "no auto-deployment was queued"
            time.sleep(0.05)
        return wait_for_deployment(Deployment.objects.get(release=release))
