"""The publish stage: the run's candidate, the image its tests ran, tagged in the registry
(commit sha, branch, git tag); no engine, no layer moved."""

from builds.publishing import image_publish
from pipelines.execution import StageTools
from pipelines.models import PipelineRun
from pipelines.services import run_record_image
from pipelines.stage_log import StageLog
from pipelines.stages.images import run_layer_reference, run_spec


def publish_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    spec = run_spec(run)
    published = image_publish(
        project=run.project,
        publish=spec.publish,
        candidate=run_layer_reference(run, spec.publish.image),
        commit_sha=run.commit_sha,
        ref=run.ref,
        run_number=run.number,
        log=log,
    )
    run_record_image(
        run=run,
        image_repository=published.repository,
        image_digest=published.digest,
        published_tags=published.tags,
    )
