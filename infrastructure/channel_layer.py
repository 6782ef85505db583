"""The channel layer adapter: hand a browser-bound event to a Channels group (Redis).

`group_publish` is the one place that talks to the channel layer from sync code (async_to_sync,
as the Channels docs do). The database holds everything a browser needs; a lost live message
only means a browser catches up on its next reconnect, so a failure here is logged, never
raised into a build or a deployment.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def group_publish(group: str, event: dict[str, Any]) -> None:
    """Send `event` to every consumer in `group` (consumers get it as a "run.event" message)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "run.event", "event": event})
    except Exception:
        logger.warning("could not publish a live update to %s", group, exc_info=True)
