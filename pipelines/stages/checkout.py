"""The checkout stage: fetch the project's mirror and export the run's commit."""

from pipelines.execution import StageTools
from pipelines.models import PipelineRun
from pipelines.stage_log import StageLog
from pipelines.workspace import workspace_ensure


def checkout_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    workspace_ensure(run, log)
