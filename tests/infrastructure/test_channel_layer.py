"""Live updates leave from a thread of their own: a browser still gets them in the order they
were published."""

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from infrastructure.channel_layer import group_publish


def test_events_published_without_waiting_arrive_in_the_order_they_were_published() -> None:
    layer = get_channel_layer()
    group = f"order-{uuid.uuid4().hex[:8]}"

    async def listen() -> list[int]:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        for seq in range(200):
            group_publish(group, {"seq": seq})
        received = [(await layer.receive(channel))["event"]["seq"] for _ in range(200)]
        await layer.group_discard(group, channel)
        return received

    assert async_to_sync(listen)() == list(range(200))
