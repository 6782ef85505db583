"""The build stage: the image stack, bases from the cache where their inputs are unchanged."""

from pipelines.execution import StageTools
from pipelines.models import PipelineRun
from pipelines.services import run_record_image
from pipelines.stage_log import StageLog
from pipelines.stages.images import run_spec, run_stack_build


def build_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    spec = run_spec(run)
    with tools.engine() as engine:
        # A worker that carries on to tests pushes the candidates beside them (the test stage).
        beside_tests = tools.carries_on and spec.test is not None
        layers = run_stack_build(run, spec, log, engine, push_candidates=not beside_tests)
    run_record_image(run=run, image_id=layers[spec.publish.image].image_id)
    for layer in layers.values():
        hit = {True: "cache hit", False: "cache miss", None: "built"}[layer.cache_hit]
        log.line(
            f"{layer.name}: {hit}, {layer.duration_seconds:.1f}s, "
            f"{layer.size_bytes / 1e6:.1f} MB, {layer.reference or layer.image_id}"
        )
