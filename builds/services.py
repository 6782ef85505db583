"""The build, test and publish stages of a run, and the clean-up after it."""

import logging
from functools import partial

from django.conf import settings

from builds.image_stack import stack_build
from builds.image_tags import ref_scoped, render_tags
from builds.models import LayerBuild, RefTag
from infrastructure.docker_engine import (
    ContainerLimits,
    DockerEngine,
    DockerEngineError,
    RegistryUnreachable,
)
from pipelines.execution import StageCancelled, StageFailure
from pipelines.models import PipelineRun
from pipelines.services import run_record_image
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure, workspace_remove
from projects.selectors import project_secrets
from projects.services import project_namespace, project_spec_policy
from projects.spec import (
    PipelineSpec,
    policy_refusal_of_test,
    publish_repository_refusal,
    spec_from_dict,
)

logger = logging.getLogger(__name__)

PUSH_BACKOFF_CAP = 30.0


def run_labels(run: PipelineRun, *, role: str) -> dict[str, str]:
    """The labels on every container a run starts, so a sweep by label finds what it left."""
    return {
        "dockyard.run": str(run.pk),
        "dockyard.project": run.project.slug,
        "dockyard.role": role,
    }


def build_stage(run: PipelineRun, log: StageLog) -> None:
    """The build stage: the image stack, bases from the cache where their inputs are unchanged."""
    spec = _spec(run)
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            layers = stack_build(
                run=run, spec=spec, source=workspace_ensure(run, log), log=log, engine=engine
            )
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None
    run_record_image(run=run, image_id=layers[spec.publish.image].image_id)
    for layer in layers.values():
        hit = {True: "cache hit", False: "cache miss", None: "built"}[layer.cache_hit]
        log.line(
            f"{layer.name}: {hit}, {layer.duration_seconds:.1f}s, "
            f"{layer.size_bytes / 1e6:.1f} MB, {layer.reference or layer.image_id}"
        )


def test_stage(run: PipelineRun, log: StageLog) -> None:
    """The test stage: the test command in a throwaway, locked-down container."""
    spec = _spec(run)
    test = spec.test
    if test is None:
        return
    # Checked when dockyard.yml was read, and again here: an operator may have lowered a
    # ceiling or taken the network back since.
    if (refusal := policy_refusal_of_test(test, project_spec_policy(run.project))) is not None:
        field, message = refusal
        raise StageFailure(f"test.{field}: {message}")
    secrets = project_secrets(run.project, test.secrets)
    missing = sorted(set(test.secrets) - set(secrets))
    if missing:
        raise StageFailure(f"test.secrets: not set for this project: {', '.join(missing)}")
    log.line(f"$ {' '.join(test.command)}")
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            image = _ensure_layer_image(run, spec, test.image, log, engine)
            outcome = log.stream(
                lambda: engine.run_throwaway(
                    image=image,
                    command=list(test.command),
                    environment={**dict(test.env), **secrets},
                    labels=run_labels(run, role="test"),
                    timeout=test.timeout,
                    limits=ContainerLimits(
                        memory_bytes=test.memory_bytes,
                        pids=test.pids,
                        nano_cpus=int(test.cpus * 1_000_000_000),
                        network=test.network,
                        user=test.user,
                    ),
                    on_output=log.write,
                    stop=log.stop_requested,
                )
            )
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None
    if outcome.stopped:
        raise StageCancelled()
    if outcome.timed_out:
        raise StageFailure(f"the test ran longer than {test.timeout}s and was killed")
    if outcome.oom_killed:
        raise StageFailure(
            f"the test container ran out of memory ({test.memory_bytes // 2**20} MiB) "
            "and was killed"
        )
    if outcome.exit_code != 0:
        raise StageFailure(f"the test command exited with status {outcome.exit_code}")


def publish_stage(run: PipelineRun, log: StageLog) -> None:
    """The publish stage: push the image under its tags (commit sha, branch, git tag)."""
    spec = _spec(run)
    namespace = project_namespace(run.project.slug)
    repository = spec.publish.repository or namespace
    # Checked when dockyard.yml was read, and again here: a grant may have been taken back.
    refusal = publish_repository_refusal(
        repository, namespace=namespace, grants=run.project.publish_grants
    )
    if refusal:
        raise StageFailure(f"publish.repository: {refusal}")
    tags = render_tags(
        spec.publish.tags, commit_sha=run.commit_sha, ref=run.ref, run_number=run.number
    )
    if not tags:
        raise StageFailure("publish.tags: no template gives a tag for this push")
    ref_tags_claim(run=run, repository=repository, templates=spec.publish.tags)
    digest = ""
    try:
        with DockerEngine(settings.DOCKER_HOST) as engine:
            image = _ensure_layer_image(run, spec, spec.publish.image, log, engine)
            for tag in tags:
                log.line(f"pushing {repository}:{tag}")
                digest = log.stream(
                    partial(
                        _push_with_retries,
                        engine,
                        log,
                        image_id=image,
                        repository=repository,
                        tag=tag,
                    )
                )
    except DockerEngineError as error:
        raise StageFailure(str(error)) from None
    run_record_image(run=run, image_repository=repository, image_digest=digest, published_tags=tags)
    log.line(f"published {repository}@{digest} as {', '.join(tags)}")


def ref_tags_claim(*, run: PipelineRun, repository: str, templates: tuple[str, ...]) -> None:
    """Record that the tags rendered from the run's ref name belong to that ref; a tag another
    ref already has fails the stage (two names the sanitiser maps onto one tag)."""
    scoped = render_tags(
        tuple(template for template in templates if ref_scoped(template)),
        commit_sha=run.commit_sha,
        ref=run.ref,
        run_number=run.number,
    )
    for tag in scoped:
        claim, _ = RefTag.objects.get_or_create(
            repository=repository, tag=tag, defaults={"project": run.project, "ref": run.ref}
        )
        if claim.ref != run.ref:
            raise StageFailure(
                f"publish.tags: {repository}:{tag} is the tag of {claim.ref}; {run.ref} would "
                f"overwrite it (both names become {tag!r} as a tag). Rename the branch or tag, "
                "or publish without {branch}/{tag} templates"
            )


def _push_with_retries(
    engine: DockerEngine, log: StageLog, *, image_id: str, repository: str, tag: str
) -> str:
    """Push, waiting out a registry that is down or restarting (doubling waits, capped),
    then give up saying so; a registry that answers with a refusal fails at once."""
    attempts = settings.DOCKYARD_PUSH_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return engine.push_image(
                image_id=image_id, repository=repository, tag=tag, on_output=log.write
            )
        except RegistryUnreachable as error:
            if attempt == attempts:
                raise StageFailure(
                    f"the registry for {repository} is unreachable; gave up after "
                    f"{attempts} attempts: {error}"
                ) from None
            delay = min(
                settings.DOCKYARD_PUSH_BACKOFF_SECONDS * 2 ** (attempt - 1), PUSH_BACKOFF_CAP
            )
            log.line(
                f"the registry is unreachable ({error}); retrying in {delay:g}s "
                f"(attempt {attempt + 1} of {attempts})"
            )
            if log.stop_requested.wait(delay):
                raise StageCancelled() from None
    raise AssertionError("unreachable: the loop returns or raises")


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


def _spec(run: PipelineRun) -> PipelineSpec:
    if run.spec is None:
        raise StageFailure("the config stage recorded no dockyard.yml for this run")
    return spec_from_dict(run.spec)


def _ensure_layer_image(
    run: PipelineRun, spec: PipelineSpec, name: str, log: StageLog, engine: DockerEngine
) -> str:
    # A later stage may land on a worker with another engine: build the stack there too (the
    # bases come from the registry cache, so only the app layer is rebuilt).
    layer = LayerBuild.objects.filter(run=run, name=name).first()
    if layer is not None and engine.image_exists(layer.image_id):
        return layer.image_id
    log.line(f"image {name!r} is not on this worker's engine; building the stack here")
    layers = stack_build(
        run=run, spec=spec, source=workspace_ensure(run, log), log=log, engine=engine
    )
    return layers[name].image_id
