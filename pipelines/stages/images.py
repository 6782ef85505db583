"""A run's images as every stage from the build on needs them: its validated spec, its stack
built on a worker's engine, and the images found again by the stages after the build."""

from builds.image_stack import ParentImage, stack_build
from builds.models import LayerBuild
from infrastructure.docker_engine import ContainerEngine
from pipelines.execution import StageFailure
from pipelines.models import PipelineRun
from pipelines.selectors import latest_published_run
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure
from projects.models import Project
from projects.spec import PipelineSpec, spec_from_dict


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
    run: PipelineRun, spec: PipelineSpec, log: StageLog, engine: ContainerEngine
) -> dict[str, LayerBuild]:
    """Build the run's stack on `engine` from its workspace (checked out again if this worker
    does not have it), on the images of the projects it builds on."""
    return stack_build(
        project=run.project,
        run_id=run.pk,
        run_number=run.number,
        spec=spec,
        source=workspace_ensure(run, log),
        log=log,
        engine=engine,
        project_parents=_project_parents(spec),
    )


def run_layer_reference(run: PipelineRun, name: str) -> str:
    """The registry reference (repository@digest) the build recorded for the run's image."""
    layer = LayerBuild.objects.filter(run=run, name=name).first()
    if layer is None or not layer.reference:
        raise StageFailure(
            f"the build stage recorded no image {name!r} in the registry for this run; "
            "retry the run to build it again"
        )
    return layer.reference


def run_layer_image(
    run: PipelineRun, spec: PipelineSpec, name: str, log: StageLog, engine: ContainerEngine
) -> str:
    """The id, on this engine, of exactly the image the build stage made for `name`: pulled
    by digest when this worker's engine does not have it (the build ran on another host)."""
    reference = run_layer_reference(run, name)
    image_id = engine.ensure_image(reference=reference, on_output=_quiet)
    log.line(f"image {name}: {reference}")
    return image_id


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
