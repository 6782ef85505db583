"""A build sees the repository and nothing else of the worker: real engine, real worker.

A hostile repository tries to reach the worker's files through dockyard.yml paths and through
symbolic links (to /etc/shadow, to /, through a chain of relative links); each run fails
cleanly with the reason, nothing is published, and the worker goes on building.
"""

import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from django.conf import settings

from infrastructure.docker_engine import DockerEngine, ImageBuildError
from pipelines.models import PipelineRun
from pipelines.states import RunStatus
from tests.factories import GitRepo, busybox_app_repo, escaping_link, make_project

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

TEST_COMMAND = "sh /app/test.sh"


def leaking_dockerfile(folder: Path, copy: str) -> None:
    dockerfile = folder / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"COPY {copy}\n")


def link_to_shadow(repo: GitRepo) -> None:
    (repo.path / "shadow").symlink_to("/etc/shadow")
    leaking_dockerfile(repo.path, "shadow /leak")


def folder_link_to_root(repo: GitRepo) -> None:
    (repo.path / "host").symlink_to("/")
    repo.write("dockyard.yml", "images:\n  app:\n    context: host\n")


def chain_of_links_to_hostname(repo: GitRepo) -> None:
    # .dockerignore is read by the worker itself and sent along with the context.
    escaping_link(repo, ".dockerignore", "/etc/hostname")
    leaking_dockerfile(repo.path, ".dockerignore /leak")


def context_above_the_repository(repo: GitRepo) -> None:
    repo.write("dockyard.yml", "images:\n  app:\n    context: ../..\n")


def dockerfile_at_an_absolute_path(repo: GitRepo) -> None:
    repo.write("dockyard.yml", "images:\n  app:\n    dockerfile: /etc/shadow\n")


@pytest.mark.parametrize(
    ("make_hostile", "stage", "reason"),
    [
        (link_to_shadow, "checkout", "'shadow' is a link to an absolute path"),
        (folder_link_to_root, "checkout", "'host' is a link to an absolute path"),
        (
            chain_of_links_to_hostname,
            "checkout",
            "'.dockerignore' is a link leading out of the repository",
        ),
        (
            context_above_the_repository,
            "config",
            "dockyard.yml:3: images.app.context: '../..' contains '..'; give a path inside",
        ),
        (
            dockerfile_at_an_absolute_path,
            "config",
            "dockyard.yml:3: images.app.dockerfile: '/etc/shadow' is absolute",
        ),
    ],
    ids=["link-to-shadow", "folder-link-to-root", "chain-of-links", "context-dotdot", "abs-file"],
)
def test_a_repository_reaching_outside_itself_fails_cleanly_and_publishes_nothing(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
    docker_client: docker.DockerClient,
    make_hostile: Callable[[GitRepo], None],
    stage: str,
    reason: str,
) -> None:
    repo = busybox_app_repo(tmp_path / "repo", test_script="cat /leak\n")
    make_hostile(repo)
    sha = repo.commit("reach outside")
    project = make_project(repository_url=repo.url, test_command=TEST_COMMAND)

    run = pushed_run(project, sha)

    assert run.status == RunStatus.FAILED
    assert run.failed_stage == stage
    assert reason in run.failure_reason
    assert registry_tags(project.slug) == []
    assert (
        docker_client.containers.list(all=True, filters={"label": f"dockyard.run={run.pk}"}) == []
    )
    workspace = settings.DOCKYARD_WORKSPACES_DIR / f"run-{run.pk}" / "src"
    assert not (workspace / "shadow").exists() and not (workspace / "host").exists()


def test_the_worker_still_builds_and_publishes_after_hostile_repositories(
    tmp_path: Path,
    celery_worker: str,
    pushed_run: Callable[..., PipelineRun],
    registry_tags: Callable[[str], list[str]],
) -> None:
    hostile = busybox_app_repo(tmp_path / "hostile")
    chain_of_links_to_hostname(hostile)
    hostile_project = make_project(repository_url=hostile.url, test_command=TEST_COMMAND)
    assert pushed_run(hostile_project, hostile.commit("hostile")).status == RunStatus.FAILED
    good = busybox_app_repo(tmp_path / "good", test_script="echo fine\n")
    sha = good.commit("good")
    project = make_project(repository_url=good.url, test_command=TEST_COMMAND)

    run = pushed_run(project, sha)

    assert run.status == RunStatus.SUCCEEDED, run.failure_reason
    assert sha in registry_tags(project.slug)


# The engine adapter on its own, handed a folder that holds such links (as if a checkout had
# let them through): the last line of defence.


@pytest.fixture
def engine() -> DockerEngine:
    with DockerEngine(settings.DOCKER_HOST) as engine:
        yield engine


def test_the_engine_refuses_a_dockerignore_that_links_out_of_the_context(
    tmp_path: Path, engine: DockerEngine, docker_client: docker.DockerClient
) -> None:
    host_secret = tmp_path / "host-secret"
    host_secret.write_text("the worker's own secret\n")
    context = tmp_path / "context"
    busybox_app_repo(context)
    (context / ".dockerignore").symlink_to(host_secret)
    tag = f"dockyard-test/containment:{uuid.uuid4().hex[:12]}"

    with pytest.raises(ImageBuildError, match="\\.dockerignore is a link leading out"):
        engine.build_image(
            context_dir=context,
            dockerfile=context / "Dockerfile",
            tag=tag,
            on_output=lambda _: None,
        )

    assert not docker_client.images.list(name=tag)


@pytest.mark.parametrize(
    ("link", "target", "copy"),
    [("shadow", "/etc/shadow", "shadow"), ("host", "/", "host/etc/shadow")],
    ids=["file-link", "folder-link"],
)
def test_a_copy_through_a_link_to_the_worker_never_puts_its_files_in_the_image(
    tmp_path: Path,
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    link: str,
    target: str,
    copy: str,
) -> None:
    context = tmp_path / "context"
    busybox_app_repo(context)
    (context / link).symlink_to(target)
    leaking_dockerfile(context, f"{copy} /leak")
    tag = f"dockyard-test/containment:{uuid.uuid4().hex[:12]}"

    # The context travels as an archive holding the link itself, never what it points at;
    # the engine resolves links inside that archive.
    with pytest.raises(ImageBuildError, match="file not found in build context"):
        engine.build_image(
            context_dir=context,
            dockerfile=context / "Dockerfile",
            tag=tag,
            on_output=lambda _: None,
        )

    assert not docker_client.images.list(name=tag)
