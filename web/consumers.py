"""The live run view over WebSocket (ws/runs/<id>/): the log's backlog, then what comes.

A consumer forwards; the only thing it keeps is the last sequence number it sent, so that
the backlog it reads and the live chunks it receives never overlap or leave a gap.
"""

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pipelines.live_updates import run_group, status_event
from pipelines.models import PipelineRun
from pipelines.selectors import run_log_after

# Close codes in the range applications may use (4000-4999), like HTTP's 401 and 404.
NOT_LOGGED_IN = 4401
NO_SUCH_RUN = 4404


class RunLogConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_LOGGED_IN)
            return
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if not await database_sync_to_async(_run_exists)(self.run_id):
            await self.close(code=NO_SUCH_RUN)
            return
        # None until the client says where it is; live chunks wait until the backlog is out.
        self.last_seq: int | None = None
        self.waiting: list[dict[str, Any]] = []
        # Join before reading the backlog: a chunk stored meanwhile arrives live, not lost.
        await self.channel_layer.group_add(run_group(self.run_id), self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "run_id"):
            await self.channel_layer.group_discard(run_group(self.run_id), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        after = content.get("after") if isinstance(content, dict) else None
        if not isinstance(after, int) or after < 0:
            await self.send_json({"type": "error", "message": 'send {"after": <last seq>}'})
            return
        self.last_seq = after
        backlog = await database_sync_to_async(run_log_after)(self.run_id, after)
        for seq, stage, section, text in backlog:
            await self._send_log(
                {"type": "log", "seq": seq, "stage": stage, "section": section, "text": text}
            )
        for event in self.waiting:
            await self._forward(event)
        self.waiting = []
        await self.send_json(await database_sync_to_async(_status)(self.run_id))

    async def run_event(self, message: dict[str, Any]) -> None:
        """A group message from run_event_publish."""
        if self.last_seq is None:
            self.waiting.append(message["event"])
        else:
            await self._forward(message["event"])

    async def _forward(self, event: dict[str, Any]) -> None:
        if event["type"] == "log":
            await self._send_log(event)
        else:
            await self.send_json(event)

    async def _send_log(self, event: dict[str, Any]) -> None:
        # Sequence numbers make a chunk that came both from the backlog and live harmless.
        if self.last_seq is not None and event["seq"] <= self.last_seq:
            return
        self.last_seq = event["seq"]
        await self.send_json(event)


def _run_exists(run_id: int) -> bool:
    return PipelineRun.objects.filter(pk=run_id).exists()


def _status(run_id: int) -> dict[str, Any]:
    return status_event(PipelineRun.objects.get(pk=run_id))
