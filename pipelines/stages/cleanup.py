"""After a run: what it left on this worker goes (its containers, its workspace)."""

import logging

from infrastructure.docker_engine import DockerEngineError
from pipelines.execution import StageTools
from pipelines.workspace import workspace_remove

logger = logging.getLogger(__name__)


def run_cleanup(run_id: int, tools: StageTools) -> None:
    """Remove what a finished run left on this worker: containers by label, its workspace."""
    try:
        with tools.engine() as engine:
            removed = engine.remove_containers(labels={"dockyard.run": str(run_id)})
    except DockerEngineError:
        logger.exception("could not sweep the containers of run %s", run_id)
    else:
        if removed:
            logger.warning("removed %d container(s) left behind by run %s", removed, run_id)
    workspace_remove(run_id)
