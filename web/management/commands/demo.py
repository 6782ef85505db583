"""python manage.py demo: push a sample repository to a running Dockyard and follow the run.

It plays the part of a developer and of GitHub: it commits to a local sample repository (its
base image is built from this machine's static busybox, so nothing is pulled from the
internet), sends the signed push webhook over HTTP to the server, then prints the run's stages
and log as they happen, where the image was published, and the release serving on staging.
"""

import json
import secrets
import shutil
import subprocess
import time
import uuid
from argparse import ArgumentParser
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from infrastructure.registry import RegistryError, repository_tags
from pipelines.models import LogChunk, PipelineRun
from pipelines.states import RUN_FINAL_STATES, RunStatus
from projects.models import Project
from projects.services import project_create
from releases.models import Deployment
from releases.states import DEPLOYMENT_FINAL_STATES, DeploymentStatus
from releases.traffic_selectors import deployment_figures
from webhooks.signatures import github_signature

PROJECT_SLUG = "demo-app"
BUSYBOX = Path("/bin/busybox")
DOCKERFILE = """\
# The base is this machine's static busybox: no image is pulled from the internet.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
WORKDIR /app
COPY app/ /app/
# Deployed, the app listens where Dockyard says (each slot has its own port).
CMD ["sh", "-c", "exec httpd -f -p ${HOST:-127.0.0.2}:${PORT:-8000} -h /app/www"]
"""
DOCKYARD_YML = """\
images:
  app: {}
test:
  command: ["sh", "/app/test.sh"]
deploy:
  port: 8000
  health: /
  environments:
    staging: {auto: true, branches: [main]}
    production: {after: staging}
"""
INDEX_HTML = "<h1>Hello from Dockyard</h1>\n"
DEPLOY_TIMEOUT_SECONDS = 120
# Requests the demo sends staging, then waits to see counted by the deploy worker's collector.
DEMO_REQUESTS = 20
DEMO_METRICS_TIMEOUT_SECONDS = 30
TEST_SCRIPT = """\
#!/bin/sh
set -e
grep -q "Hello from Dockyard" /app/www/index.html
echo "ok: the index page greets its visitors"
"""
FOLLOW_TIMEOUT_SECONDS = 600


class Command(BaseCommand):
    help = "Commit to a sample repository, send its push webhook, follow the run to its end."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--server", default="http://127.0.0.1:8000", help="Dockyard's URL")

    def handle(self, *args: Any, **options: Any) -> None:
        server = options["server"].rstrip("/")
        repository = settings.DATA_DIR / "demo" / "sample-app"
        sha, message = self._commit_sample(repository)
        project = self._project(repository)
        password = self._demo_user()
        self.stdout.write(f"pushed {sha[:12]} to {repository}; sending the webhook to {server}")
        answer = self._send_push(server, project, repository, sha, message)
        run = PipelineRun.objects.get(pk=int(answer["run"].rstrip("/").rsplit("/", 1)[1]))
        run = self._follow(run)
        self.stdout.write("")
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"run #{run.number} {run.status}: {run.failure_reason}")
        tags = self._registry_tags(project.slug)
        self.stdout.write(self.style.SUCCESS(f"run #{run.number} succeeded"))
        self.stdout.write(f"image:    {run.image_reference}")
        self.stdout.write(f"digest:   {run.image_digest}")
        listed = "lists it" if run.commit_sha in tags else "does NOT list it"
        self.stdout.write(
            f"registry: http://{settings.DOCKYARD_REGISTRY}/v2/{project.slug}/tags/list {listed} "
            f"({len(tags)} tags)"
        )
        if run.commit_sha not in tags:
            raise CommandError(f"the registry does not list {run.commit_sha}")
        deployment = self._staging_deployment(run)
        staging = deployment.environment
        served = urlopen(staging.frontend_url, timeout=10).read().decode()
        self.stdout.write(
            f"staging:  release {deployment.release.number} serves "
            f"{staging.frontend_url} -> {served.strip()}"
        )
        self._metrics(deployment)
        self.stdout.write(
            f"promote:  python manage.py deploy {project.slug} production "
            f"{deployment.release.number}"
        )
        self.stdout.write(
            f"web UI:   {server}{run.get_absolute_url()} (user demo, password {password})"
        )

    def _commit_sample(self, repository: Path) -> tuple[str, str]:
        if not BUSYBOX.is_file():
            raise CommandError(f"{BUSYBOX} is missing: install Debian's busybox-static")
        if not (repository / ".git").is_dir():
            (repository / "app" / "www").mkdir(parents=True)
            _git(repository, "init", "--quiet", "--initial-branch=main")
            shutil.copy(BUSYBOX, repository / "busybox")
            (repository / "app" / "www" / "index.html").write_text(INDEX_HTML)
            (repository / "app" / "test.sh").write_text(TEST_SCRIPT)
        (repository / "Dockerfile").write_text(DOCKERFILE)
        (repository / "dockyard.yml").write_text(DOCKYARD_YML)
        # Every demo pushes a new commit, as a developer would.
        (repository / "app" / "www" / "built-at.txt").write_text(f"{timezone.now().isoformat()}\n")
        _git(repository, "add", "--all")
        message = "Demo change at " + timezone.now().strftime("%H:%M:%S")
        _git(repository, "commit", "--quiet", "-m", message)
        return _git(repository, "rev-parse", "HEAD"), message

    def _project(self, repository: Path) -> Project:
        project = Project.objects.filter(slug=PROJECT_SLUG).first()
        if project is None:
            project = project_create(
                slug=PROJECT_SLUG,
                repository_url=str(repository),
            )
            self.stdout.write(f"registered project {project.slug}")
        return project

    def _demo_user(self) -> str:
        password_file = settings.DATA_DIR / "demo-password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(12))
        password = password_file.read_text().strip()
        user, _ = get_user_model().objects.get_or_create(username="demo")
        user.set_password(password)
        user.is_staff = user.is_superuser = True
        user.save()
        return password

    def _send_push(
        self, server: str, project: Project, repository: Path, sha: str, message: str
    ) -> dict[str, Any]:
        payload = {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {
                "name": repository.name,
                "full_name": f"demo/{repository.name}",
                "clone_url": str(repository),
                "default_branch": "main",
            },
            "head_commit": {"id": sha, "message": message},
            "pusher": {"name": "demo"},
        }
        body = json.dumps(payload).encode()
        request = Request(
            f"{server}/webhooks/github/",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/dockyard-demo",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": github_signature(secret=project.webhook_secret, body=body),
            },
        )
        try:
            with urlopen(request, timeout=30) as response:
                answer: dict[str, Any] = json.load(response)
                self.stdout.write(f"webhook answered {response.status}: {answer['message']}")
        except HTTPError as error:
            raise CommandError(
                f"the webhook was refused ({error.code}): {error.read()!r}"
            ) from None
        except URLError as error:
            raise CommandError(f"Dockyard is not answering at {server}: {error.reason}") from None
        return answer

    def _follow(self, run: PipelineRun) -> PipelineRun:
        seen_seq = 0
        stage_states = {stage.name: stage.status for stage in run.stages.all()}
        deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            run.refresh_from_db()
            for chunk in LogChunk.objects.filter(run=run, seq__gt=seen_seq).order_by("seq"):
                self.stdout.write(chunk.text, ending="")
                seen_seq = chunk.seq
            for stage in run.stages.all():
                if stage_states.get(stage.name) != stage.status:
                    stage_states[stage.name] = stage.status
                    self.stdout.write(
                        self.style.MIGRATE_HEADING(f"== {stage.name}: {stage.status}")
                    )
            if run.status in RUN_FINAL_STATES:
                return run
            time.sleep(0.5)
        raise CommandError(f"run #{run.number} did not finish within {FOLLOW_TIMEOUT_SECONDS}s")

    def _staging_deployment(self, run: PipelineRun) -> Deployment:
        deadline = time.monotonic() + DEPLOY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            deployment = Deployment.objects.filter(
                release__run=run, environment__name="staging"
            ).first()
            if deployment is not None and deployment.status in DEPLOYMENT_FINAL_STATES:
                if deployment.status != DeploymentStatus.SUCCEEDED:
                    raise CommandError(f"staging deployment failed: {deployment.failure_reason}")
                return deployment
            time.sleep(0.2)
        raise CommandError("the release did not reach staging in time")

    def _metrics(self, deployment: Deployment) -> None:
        """Send the app a few requests and show them as the worker's collector counted them
        from staging's HAProxy (it reads every DOCKYARD_TRAFFIC_SAMPLE_SECONDS)."""
        staging = deployment.environment
        for _ in range(DEMO_REQUESTS):
            urlopen(staging.frontend_url, timeout=10).read()
        deadline = time.monotonic() + DEMO_METRICS_TIMEOUT_SECONDS
        figures = deployment_figures(deployment)
        while figures.requests < DEMO_REQUESTS and time.monotonic() < deadline:
            time.sleep(0.5)
            figures = deployment_figures(deployment)
        if figures.requests < DEMO_REQUESTS:
            raise CommandError(
                f"the collector counted {figures.requests} of the {DEMO_REQUESTS} requests sent "
                f"to staging within {DEMO_METRICS_TIMEOUT_SECONDS}s: is a deploy worker running?"
            )
        p50, p95 = figures.percentile_ms(0.5) or 0, figures.percentile_ms(0.95) or 0
        self.stdout.write(
            f"metrics:  {figures.requests} requests to release {deployment.release.number}, "
            f"{figures.responses_5xx} answered 5xx, p50 {p50:.1f} ms, p95 {p95:.1f} ms "
            "(from staging's HAProxy)"
        )

    def _registry_tags(self, name: str) -> list[str]:
        try:
            return repository_tags(f"{settings.DOCKYARD_REGISTRY}/{name}")
        except RegistryError as error:
            raise CommandError(str(error)) from None


def _git(repository: Path, *args: str) -> str:
    completed = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Dockyard Demo",
            "-c",
            "user.email=demo@dockyard.invalid",
            *args,
        ],
        cwd=repository,
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip()
