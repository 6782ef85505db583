"""A run's images as every stage from the build on needs them: its validated spec, its stack
built on a worker's engine, and the images found again by the stages after the build."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from builds.candidates import candidate_push
from builds.image_stack import ParentImage, stack_build
from builds.models import LayerBuild
from builds.publishing import publish_blobs_prepare
from infrastructure.docker_engine import ContainerEngine
from pipelines.execution import StageFailure
from pipelines.models import PipelineRun, TestStep
from pipelines.selectors import latest_published_run
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure
from projects.models import Project
from projects.spec import PipelineSpec, spec_from_dict, steps_of


def run_spec(run: PipelineRun) -> PipelineSpec:
    """The dockyard.yml the config stage validated and recorded for the run."""
    if run.spec is None:
        raise StageFailure("the config stage recorded no dockyard.yml for this run")
    return spec_from_dict(run.spec)


def run_labels(run: PipelineRun, *, role: str) -> dict[str, str]:
    """The labels on every container a run starts, so a sweep by label finds what it left."""
    return {
        "dockyard.run": str(run.pk),
        "dockyard.project": run.project.slug,
        "dockyard.role": role,
    }


def run_stack_build(
    run: PipelineRun,
    spec: PipelineSpec,
    log: StageLog,
    engine: ContainerEngine,
    *,
    push_candidates: bool = True,
) -> dict[str, LayerBuild]:
    """Build the run's stack on `engine` from its workspace (checked out again if this worker
    does not have it), on the images of the projects it builds on. With `push_candidates`,
    the image to publish also has its blobs linked into the publish repository."""
    layers = stack_build(
        project=run.project,
        run_id=run.pk,
        run_number=run.number,
        spec=spec,
        source=workspace_ensure(run, log),
        log=log,
        engine=engine,
        project_parents=_project_parents(spec),
        push_candidates=push_candidates,
    )
    published = layers.get(spec.publish.image)
    if push_candidates and published is not None and published.reference:
        _publish_blobs_prepare(run, spec, published.reference)
    return layers


@contextmanager
def run_candidates_pushed_beside(
    run: PipelineRun, spec: PipelineSpec, log: StageLog, engine: ContainerEngine
) -> Iterator[None]:
    """Push, beside the block, the run's images the build left unpushed for this worker
    (`push_candidates=False`); the block's end waits for the push and records each reference.
    The image to publish has its blobs linked into the publish repository meanwhile too
    (publish_blobs_prepare): the publish stage then only puts its tags.

    When this engine does not hold them (the worker that built them was lost before they were
    pushed), they are built again here, and pushed, before the block: the images tested are
    still the images published.
    """
    unpushed = [layer for layer in run.layers.order_by("position") if not layer.reference]
    if not unpushed:
        yield
        return
    if not all(engine.image_exists(layer.image_id) for layer in unpushed):
        log.line(
            "the build's images were not pushed before its worker was lost, and this worker "
            "does not have them: building them again here"
        )
        run_stack_build(run, spec, log, engine)
        yield
        return
    section = log.section("candidates")
    references: dict[str, str] = {}
    failures: list[BaseException] = []

    def push_each() -> None:
        try:
            for layer in unpushed:
                references[layer.name] = candidate_push(
                    project=run.project,
                    run_number=run.number,
                    name=layer.name,
                    image_id=layer.image_id,
                    engine=engine,
                    log=section,
                )
            if spec.publish.image in references:
                _publish_blobs_prepare(run, spec, references[spec.publish.image])
        except BaseException as error:
            failures.append(error)

    pushing = threading.Thread(target=push_each, name="candidates-push", daemon=True)
    pushing.start()
    try:
        yield
    finally:
        # A failed block ends its stage too: the push must not outlive it.
        pushing.join()
    if failures:
        raise failures[0]
    for layer in unpushed:
        LayerBuild.objects.filter(pk=layer.pk).update(reference=references[layer.name])
    # The steps ran the image by its id meanwhile; their records name the pushed reference.
    for step, image in _steps_by_image(spec).items():
        if image in references:
            TestStep.objects.filter(run=run, name=step, image="").update(image=references[image])


def _publish_blobs_prepare(run: PipelineRun, spec: PipelineSpec, candidate: str) -> None:
    # Pull request runs publish nothing.
    if run.deployable:
        publish_blobs_prepare(project=run.project, publish=spec.publish, candidate=candidate)


def run_layer_reference(run: PipelineRun, name: str) -> str:
    """The registry reference (repository@digest) the build recorded for the run's image."""
    return _pushed_reference(_layer(run, name), name)


def run_layer_image(
    run: PipelineRun, spec: PipelineSpec, name: str, log: StageLog, engine: ContainerEngine
) -> str:
    """The id, on this engine, of exactly the image the build stage made for `name`: pulled
    by digest when this worker's engine does not have it (the build ran on another host), or
    the id the build recorded while its push is still under way (run_candidates_pushed_beside)."""
    layer = _layer(run, name)
    if layer is not None and not layer.reference and layer.image_id:
        log.line(f"image {name}: {layer.image_id}, built on this worker")
        return layer.image_id
    reference = _pushed_reference(layer, name)
    image_id = engine.ensure_image(reference=reference, on_output=_quiet)
    log.line(f"image {name}: {reference}")
    return image_id


def _layer(run: PipelineRun, name: str) -> LayerBuild | None:
    return LayerBuild.objects.filter(run=run, name=name).first()


def _pushed_reference(layer: LayerBuild | None, name: str) -> str:
    if layer is None or not layer.reference:
        raise StageFailure(
            f"the build stage recorded no image {name!r} in the registry for this run; "
            "retry the run to build it again"
        )
    return layer.reference


def _steps_by_image(spec: PipelineSpec) -> dict[str, str]:
    """The image of the stack each test step runs, by step name."""
    return {step.name: step.image for step in steps_of(spec.test)} if spec.test else {}


def _quiet(_: str) -> None:
    """Pull progress is noise in a stage's log; the reference is said instead."""


def _project_parents(spec: PipelineSpec) -> dict[str, ParentImage]:
    """What each `from: project:<slug>` builds on: that project's newest published image."""
    parents: dict[str, ParentImage] = {}
    for image in spec.images:
        slug = image.from_project
        if slug is None or slug in parents:
            continue
        project = Project.objects.filter(slug=slug).first()
        published = latest_published_run(project) if project is not None else None
        if project is not None and published is None:
            raise StageFailure(
                f"images.{image.name}.from: project {slug!r} has not published an image "
                f"from {project.default_branch!r} yet"
            )
        if published is not None:
            parents[slug] = ParentImage(
                label=f"project:{slug}",
                reference=f"{published.image_repository}@{published.image_digest}",
                digest=published.image_digest,
            )
    return parents
