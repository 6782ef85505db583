"""The publish stage: push the image under its tags (commit sha, branch, git tag)."""

from builds.publishing import image_publish
from pipelines.execution import StageTools
from pipelines.models import PipelineRun
from pipelines.services import run_record_image
from pipelines.stage_log import StageLog
from pipelines.stages.images import run_layer_image, run_spec


def publish_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    spec = run_spec(run)
    with tools.engine() as engine:
        published = image_publish(
            project=run.project,
            publish=spec.publish,
            image_id=run_layer_image(run, spec, spec.publish.image, log, engine),
            commit_sha=run.commit_sha,
            ref=run.ref,
            run_number=run.number,
            engine=engine,
            log=log,
        )
    run_record_image(
        run=run,
        image_repository=published.repository,
        image_digest=published.digest,
        published_tags=published.tags,
    )
