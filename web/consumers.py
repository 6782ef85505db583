"""The live views over WebSocket.

ws/runs/<id>/: a run's log, its backlog then what comes. The consumer forwards; the only
thing it keeps is the last sequence number it sent, so that the backlog it reads and the live
chunks it receives never overlap or leave a gap.

ws/environments/<id>/logs/?host=&search=: an environment's app logs, the backlog then, every
second, what its containers printed since (releases.app_logs keeps where it stopped).
"""

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pipelines.live_updates import run_group, status_event
from pipelines.models import PipelineRun
from pipelines.selectors import run_log_after
from releases.app_logs import (
    AppLogFollower,
    AppLogLine,
    AppLogRefused,
    AppLogSources,
    RelayedAppLogReader,
    app_log_line_json,
    app_log_sources,
    search_refusal,
)
from releases.models import Environment

logger = logging.getLogger(__name__)

# Close codes in the range applications may use (4000-4999), like HTTP's 400, 401 and 404.
BAD_REQUEST = 4400
NOT_LOGGED_IN = 4401
NO_SUCH_RUN = 4404
NO_SUCH_ENVIRONMENT = 4404
# Unexpected trouble on the server's side (the WebSocket protocol's own code).
INTERNAL_ERROR = 1011
APP_LOG_POLL_SECONDS = 1.0


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


class AppLogConsumer(AsyncJsonWebsocketConsumer):
    """Sends {"type": "lines", "backlog": bool, "lines": [...]}: the backlog once, then each
    second the lines printed since, if any."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_LOGGED_IN)
            return
        self.environment_id = int(self.scope["url_route"]["kwargs"]["environment_id"])
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        self.host = query.get("host", [""])[0]
        search = query.get("search", [""])[0]
        if search_refusal(search):
            await self.close(code=BAD_REQUEST)
            return
        try:
            sources = await database_sync_to_async(app_log_sources)(
                self.environment_id, host=self.host
            )
        except (Environment.DoesNotExist, AppLogRefused):
            await self.close(code=NO_SUCH_ENVIRONMENT)
            return
        await self.accept()
        self.stopped = asyncio.Event()
        self.following = asyncio.create_task(
            self._follow(
                AppLogFollower(
                    RelayedAppLogReader(
                        environment_id=self.environment_id, host=self.host, search=search
                    )
                ),
                sources,
            )
        )

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "following"):
            self.stopped.set()
            # Until the read under way ends (an engine answers or times out within seconds):
            # the reader's connections are closed by then.
            await self.following

    async def _follow(self, follower: AppLogFollower, sources: AppLogSources) -> None:
        # The engines are read on threads of their own (not the one the database work shares):
        # a slow engine holds up this socket only.
        read_backlog = sync_to_async(follower.backlog, thread_sensitive=False)
        read_newer = sync_to_async(follower.newer, thread_sensitive=False)
        try:
            await self._send_lines(await read_backlog(sources), backlog=True)
            while not await self._stopped_within(APP_LOG_POLL_SECONDS):
                # Read again each time: a deployment moves the live slot to other containers.
                sources = await database_sync_to_async(app_log_sources)(
                    self.environment_id, host=self.host
                )
                lines = await read_newer(sources)
                if lines and not self.stopped.is_set():
                    await self._send_lines(lines, backlog=False)
        except (Environment.DoesNotExist, AppLogRefused):  # gone, or its host taken away
            await self.close(code=NO_SUCH_ENVIRONMENT)
        except Exception:
            logger.exception("following the app logs of environment %s", self.environment_id)
            await self.close(code=INTERNAL_ERROR)
        finally:
            await sync_to_async(follower.close, thread_sensitive=False)()

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stopped.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _send_lines(self, lines: list[AppLogLine], *, backlog: bool) -> None:
        await self.send_json(
            {
                "type": "lines",
                "backlog": backlog,
                "lines": [app_log_line_json(line) for line in lines],
            }
        )
