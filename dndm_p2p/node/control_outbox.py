"""The bounded out-queue of one peer's control stream.

A :class:`ControlOutbox` holds what the session will write to the peer: queued adverts (sent as
batches of at most 512) and other control frames.  Queued frames are bounded by
``limits.control_queue_frames`` and ``limits.control_queue_bytes`` and reserved in the node's
resource manager (``memory``/``control_queue``) until written; a frame over the bound is not
queued, and the refusal is counted and reported against the peer.  Every frame written gets its
send time and a sequence number (from 1, in writing order).  "Last words" (a ``Result`` queued
as the session fails) may be queued outside the budget and are written before the stream closes.

The writer is paced: it writes at most one batch of frames per ``min_interval`` seconds, and
whatever is queued meanwhile goes into the next batch.  So a node whose handles come and go
quickly sends few, full frames, and stays within its peers' control rate limits (see
``NodeConfig.control_rate``), which refuse frames beyond their rate.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable

import trio

from dndm_p2p.config import ResourceLimits
from dndm_p2p.errors import ConnectionLost, ResourceLimitExceeded
from dndm_p2p.node.outbound import now_us
from dndm_p2p.node.resources import ResourceManager
from protocols.framing import FrameWriter
from protocols.v1 import advert_pb2, control_pb2

__all__ = ["ControlOutbox"]

#: Adverts per ``AdvertBatch`` frame.
_ADVERT_BATCH = 512
#: Bytes counted per frame on top of its body: the header the writer stamps, the length prefix.
_FRAME_OVERHEAD = 16


class ControlOutbox:
    """What is waiting to be written on one peer's control stream (see the module docstring)."""

    def __init__(
        self,
        peer: str,
        limits: ResourceLimits,
        resources: ResourceManager,
        report_error: Callable[..., None],
        *,
        min_interval: float = 0.0,
    ) -> None:
        self.peer = peer
        self._min_interval = min_interval
        self._last_write = -math.inf
        self._limits = limits
        self._resources = resources
        self._report_error = report_error
        self._pending: list[advert_pb2.Advert] = []
        self._pending_frames: list[control_pb2.ControlFrame] = []
        #: Bytes reserved for control frames queued or being written (released as written).
        self._queued_bytes = 0
        self._wake_writer = trio.Event()
        self._sent_frames = itertools.count(1)

    def queue_advert(self, advert: advert_pb2.Advert) -> None:
        """Queue an advert; the writer sends queued adverts as one batch."""
        self._pending.append(advert)
        self._wake_writer.set()

    def discard_adverts(self) -> None:
        """Forget the queued adverts (the hello about to be sent carries the full set)."""
        self._pending.clear()

    def queue_frame(self, frame: control_pb2.ControlFrame) -> bool:
        """Queue ``frame`` for the writer, within the control queue's bounds; False (and the
        refusal counted and reported) when it does not fit."""
        limits = self._limits
        size = frame.ByteSize() + _FRAME_OVERHEAD
        if len(self._pending_frames) >= limits.control_queue_frames:
            return self._refuse(
                f"{self.peer} has {len(self._pending_frames)} control frames queued "
                f"(the limit); it does not read its control stream",
                1,
                limits.control_queue_frames,
            )
        if self._queued_bytes + size > limits.control_queue_bytes:
            return self._refuse(
                f"{self.peer} has {self._queued_bytes} bytes of control frames queued; "
                f"{size} more would pass the limit of {limits.control_queue_bytes}",
                size,
                limits.control_queue_bytes,
            )
        try:
            self._resources.reserve(self.peer, "memory", size, "control_queue")
        except ResourceLimitExceeded as exc:
            self._report_error(exc, peer=self.peer)
            return False
        self._queued_bytes += size
        self._pending_frames.append(frame)
        self._wake_writer.set()
        return True

    def _refuse(self, message: str, size: int, limit: int) -> bool:
        error = ResourceLimitExceeded(
            message,
            resource="memory",
            use="control_queue",
            scope="peer",
            size=size,
            limit=limit,
            peer=self.peer,
        )
        self._resources.count_refusal(error)
        self._report_error(error, peer=self.peer)
        return False

    def queue_last_words(self, frame: control_pb2.ControlFrame) -> None:
        """Queue a ``Result`` frame outside the queue's budget (the session is ending)."""
        self._pending_frames.append(frame)
        self._wake_writer.set()

    def has_last_words(self) -> bool:
        """True while a ``Result`` frame waits to be written."""
        return any(f.WhichOneof("body") == "result" for f in self._pending_frames)

    def wake(self) -> None:
        """Make the writer look at the queue now (to notice the session closing, say)."""
        self._wake_writer.set()

    def stamped(self, frame: control_pb2.ControlFrame) -> control_pb2.ControlFrame:
        """Give an outgoing control frame its send time and its sequence number (from 1)."""
        frame.header.timestamp_us = now_us()
        frame.header.sequence = next(self._sent_frames)
        return frame

    async def write_next(self, writer: FrameWriter) -> None:
        """Wait to be woken, then write everything queued (frames, then advert batches); the
        frames' bytes stay reserved until written."""
        await self._wake_writer.wait()
        # Pacing: what arrives within min_interval of the last write joins the next batch.
        await trio.sleep_until(self._last_write + self._min_interval)
        self._wake_writer = trio.Event()
        frames, self._pending_frames = self._pending_frames, []
        taken = self._queued_bytes
        if self._pending:
            adverts, self._pending = self._pending, []
            for start in range(0, len(adverts), _ADVERT_BATCH):
                batch = advert_pb2.AdvertBatch(adverts=adverts[start : start + _ADVERT_BATCH])
                frames.append(control_pb2.ControlFrame(adverts=batch))
        if frames:
            self._last_write = trio.current_time()
            await writer.write_messages(self.stamped(f) for f in frames)
            self._queued_bytes -= taken
            self._resources.release(self.peer, "memory", taken, "control_queue")

    async def write_last_words(self, writer: FrameWriter) -> None:
        """Write the queued ``Result`` frames, unless the stream broke (a lost connection is
        not an error here)."""
        last = [f for f in self._pending_frames if f.WhichOneof("body") == "result"]
        if last and not writer.broken:
            with contextlib.suppress(ConnectionLost):
                await writer.write_messages(self.stamped(f) for f in last)

    def release(self) -> None:
        """Release every byte still reserved for the queue (the session ended)."""
        self._resources.release(self.peer, "memory", self._queued_bytes, "control_queue")
        self._queued_bytes = 0
