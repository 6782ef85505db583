"""Live run updates for browsers: log chunks and status changes, sent to the run's group.

The database holds everything a browser needs; these are nudges (infrastructure.channel_layer).
"""

from typing import Any

from infrastructure.channel_layer import group_publish
from pipelines.models import LogChunk, PipelineRun


def run_group(run_id: int) -> str:
    # Channels group names allow letters, digits, hyphens, underscores and periods only.
    return f"run.{run_id}"


def run_event_publish(run_id: int, event: dict[str, Any]) -> None:
    group_publish(run_group(run_id), event)


def log_event(chunk: LogChunk, stage_name: str) -> dict[str, Any]:
    return {
        "type": "log",
        "seq": chunk.seq,
        "stage": stage_name,
        "section": chunk.section,
        "text": chunk.text,
    }


def status_event(run: PipelineRun) -> dict[str, Any]:
    """What a browser shows of a run's progress, read fresh from the database."""
    return {
        "type": "status",
        "run": {
            "status": run.status,
            "failure_reason": run.failure_reason,
            "stages": [
                {
                    "name": stage.name,
                    "status": stage.status,
                    "duration": round(stage.duration_seconds, 1)
                    if stage.duration_seconds is not None
                    else None,
                }
                for stage in run.stages.order_by("position")
            ],
        },
    }


def run_status_publish(run_id: int) -> None:
    run = PipelineRun.objects.filter(pk=run_id).first()
    if run is not None:
        run_event_publish(run_id, status_event(run))
