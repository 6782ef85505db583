"""The build, test and publish stages of a run, and the clean-up after it."""

import logging
import shlex

from django.conf import settings

from builds.docker_engine import (
    ContainerLimits,
    DockerEngine,
    DockerEngineError,
    ImageBuildError,
)
from pipelines.execution import StageFailure
from pipelines.models import PipelineRun
from pipelines.services import run_record_image
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure, workspace_remove

logger = logging.getLogger(__name__)

DOCKERFILE = "Dockerfile"


def run_labels(run: PipelineRun, *, role: str) -> dict[str, str]:
    """The labels on every container a run starts, so a sweep by label finds what it left."""
    return {
        "dockyard.run": str(run.pk),
        "dockyard.project": run.project.slug,
        "dockyard.role": role,
    }


def image_labels(run: PipelineRun) -> dict[str, str]:
    # No run id: two runs of the same commit must be able to produce the same image.
    return {"dockyard.project": run.project.slug}


def local_image_tag(run: PipelineRun) -> str:
    return f"dockyard/{run.project.slug}:run-{run.pk}"


def build_stage(run: PipelineRun, log: StageLog) -> None:
    """The build stage: the repository's Dockerfile, built on the worker's engine."""
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            _build(run, log, engine)
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None


def test_stage(run: PipelineRun, log: StageLog) -> None:
    """The test stage: the project's test command in a throwaway, network-less container."""
    command = shlex.split(run.project.test_command)
    timeout = run.project.test_timeout
    log.line(f"$ {shlex.join(command)}")
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            image = _ensure_run_image(run, log, engine)
            outcome = engine.run_throwaway(
                image=image,
                command=command,
                labels=run_labels(run, role="test"),
                timeout=timeout,
                limits=ContainerLimits(),
                on_output=log.write,
            )
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None
    if outcome.timed_out:
        raise StageFailure(f"the test command ran longer than {timeout}s and was killed")
    if outcome.oom_killed:
        raise StageFailure("the test container ran out of memory and was killed")
    if outcome.exit_code != 0:
        raise StageFailure(f"the test command exited with status {outcome.exit_code}")


def publish_stage(run: PipelineRun, log: StageLog) -> None:
    """The publish stage: push the image to the registry, tagged with the full commit sha."""
    repository = f"{settings.DOCKYARD_REGISTRY}/{run.project.slug}"
    log.line(f"pushing {repository}:{run.commit_sha}")
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            image = _ensure_run_image(run, log, engine)
            digest = engine.push_image(
                image_id=image, repository=repository, tag=run.commit_sha, on_output=log.write
            )
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None
    run_record_image(run=run, image_reference=f"{repository}:{run.commit_sha}", image_digest=digest)
    log.line(f"pushed {repository}@{digest}")


def run_cleanup(run_id: int) -> None:
    """Remove what a finished run left on this worker: containers by label, its workspace."""
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            removed = engine.remove_containers(labels={"dockyard.run": str(run_id)})
    except DockerEngineError:
        logger.exception("could not sweep the containers of run %s", run_id)
    else:
        if removed:
            logger.warning("removed %d container(s) left behind by run %s", removed, run_id)
    workspace_remove(run_id)


def _build(run: PipelineRun, log: StageLog, engine: DockerEngine) -> str:
    source = workspace_ensure(run, log)
    if not (source / DOCKERFILE).is_file():
        raise StageFailure(f"no {DOCKERFILE} at the root of the repository")
    tag = local_image_tag(run)
    try:
        image_id = engine.build_image(
            context_dir=source,
            dockerfile=DOCKERFILE,
            tag=tag,
            labels=image_labels(run),
            on_output=log.write,
        )
    except ImageBuildError as error:
        raise StageFailure(f"the image did not build: {error}") from None
    run_record_image(run=run, image_id=image_id)
    log.line(f"built {tag} ({image_id})")
    return image_id


def _ensure_run_image(run: PipelineRun, log: StageLog, engine: DockerEngine) -> str:
    # A later stage may land on a worker with another engine: build there too (its layer
    # cache makes this cheap where the image was built before).
    if run.image_id and engine.image_exists(run.image_id):
        return run.image_id
    log.line("the built image is not on this worker's engine; building it here")
    return _build(run, log, engine)
