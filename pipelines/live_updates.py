"""Live run updates for browsers: log chunks and status changes, sent to the run's group.

`run_event_publish` is the one place that talks to the channel layer (async_to_sync, as the
Channels docs do from sync code). The database holds everything a browser needs; a lost live
message only means a browser catches up on its next reconnect, so a failure here is logged,
never raised into a build.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from pipelines.models import LogChunk, PipelineRun

logger = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    # Channels group names allow letters, digits, hyphens, underscores and periods only.
    return f"run.{run_id}"


def run_event_publish(run_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(run_group(run_id), {"type": "run.event", "event": event})
    except Exception:
        logger.warning("could not publish a live update of run %s", run_id, exc_info=True)


def log_event(chunk: LogChunk, stage_name: str) -> dict[str, Any]:
    return {"type": "log", "seq": chunk.seq, "stage": stage_name, "text": chunk.text}


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
