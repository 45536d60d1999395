"""The node's event stream: every consumer gets its own bounded channel of :class:`NodeEvent`.

Delivery never blocks the node: a consumer that falls more than its buffer behind misses the
newest events, and a consumer that left (or a channel closed at shutdown) is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from dndm_p2p.node.types import NodeEvent

__all__ = ["EventHub"]


class EventHub:
    """The consumers of one node's events."""

    def __init__(self) -> None:
        self._channels: list[trio.MemorySendChannel[NodeEvent]] = []

    @asynccontextmanager
    async def subscribe(self, buffer: int) -> AsyncIterator[trio.MemoryReceiveChannel[NodeEvent]]:
        """Receive the events emitted while in the block (at most ``buffer`` unread)."""
        send, receive = trio.open_memory_channel[NodeEvent](buffer)
        self._channels.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._channels:
                self._channels.remove(send)
            send.close()

    def emit(self, event: NodeEvent) -> None:
        """Deliver ``event`` to every consumer that has room for it."""
        for channel in list(self._channels):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                # Closed at shutdown, or its consumer left events(): nobody reads it any more.
                if channel in self._channels:
                    self._channels.remove(channel)

    def close(self) -> None:
        """End every consumer's stream (the node is closing)."""
        for channel in self._channels:
            channel.close()
