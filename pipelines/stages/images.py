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
        spec=spec,
        source=workspace_ensure(run, log),
        log=log,
        engine=engine,
        project_parents=_project_parents(spec),
    )


def run_layer_image(
    run: PipelineRun, spec: PipelineSpec, name: str, log: StageLog, engine: ContainerEngine
) -> str:
    """The id of the run's image `name` on this engine, built here if it is not."""
    # A later stage may land on a worker with another engine: build the stack there too (the
    # bases come from the registry cache, so only the app layer is rebuilt).
    layer = LayerBuild.objects.filter(run=run, name=name).first()
    if layer is not None and engine.image_exists(layer.image_id):
        return layer.image_id
    log.line(f"image {name!r} is not on this worker's engine; building the stack here")
    return run_stack_build(run, spec, log, engine)[name].image_id


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
