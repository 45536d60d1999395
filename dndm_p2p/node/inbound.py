"""The subscriber's end of a remote link: a peer's intent feeding our local interests.

The link is a *source* on the route (like a local intent, but it delivers to the interests of
this process only: messages travel one hop).  It opens the data stream with a ``LinkOpen`` that
grants the publisher an initial credit, reads ``DataBatch`` frames, decodes each message once
and hands the same object to every local subscriber, and returns credit as it delivers.  When a
local subscriber with the ``block`` policy is full, the link stops delivering and stops granting
credit, so the publisher's producers wait in turn: lossless end to end, with nothing held in
between beyond the window.
"""

from __future__ import annotations

from typing import Any

import trio
from google.protobuf.message import DecodeError, Message

from dndm_p2p.core.adverts import qos_to_wire
from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.lowlevel import RouteState
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import (
    ConnectionLost,
    MalformedFrame,
    ProtocolError,
)
from dndm_p2p.node.outbound import now_us
from dndm_p2p.node.results import error_for
from protocols import compression
from protocols.framing import FrameReader, FrameWriter, parse_message
from protocols.v1 import common_pb2, control_pb2, data_pb2, result_pb2

__all__ = ["InboundLink"]


class InboundLink:
    """One route we subscribe to at one peer (see the module docstring).

    A reliable link keeps ``last_delivered`` across streams, so a new stream resumes after it,
    until it is :attr:`stale`: its publisher gave it up or could not resume it, and the next
    link to the route starts afresh.
    """

    def __init__(
        self,
        router: Router,
        route: Route,
        msg_type: type[Message],
        peer: str,
        link_id: int,
        qos: QoS,
        *,
        compression_choice: common_pb2.Compression.ValueType,
        max_frame_size: int,
    ) -> None:
        self.router = router
        self.route = route
        self.msg_type = msg_type
        self.peer = peer
        self.link_id = link_id
        self.qos = qos
        self.compression = compression_choice
        self.link = LinkInfo(link_id, route, peer)
        self.tracker = LinkTracker()
        self.last_delivered = 0
        self.received = 0
        self.dropped_by_publisher = 0
        self.unrouted = 0
        #: True once the publisher ended the link's state (evicted it, or refused to resume it).
        self.stale = False
        self._max_frame_size = max_frame_size
        self._state: RouteState | None = None
        #: Messages the publisher may still send on the current stream (its credit).
        self._window = 0
        #: Credit earned by delivering, not yet returned to the publisher.
        self._unreturned = 0

    def opening(self) -> bytes:
        """The serialized ``LinkOpen`` frame body that starts (or resumes) the link."""
        frame = control_pb2.DataFrame(
            open=data_pb2.LinkOpen(
                route=str(self.route),
                link_id=self.link_id,
                qos=qos_to_wire(self.qos),
                chosen=self.compression,
                initial_credit=self.qos.depth,
                resume_after=self.last_delivered if self.qos.reliable else 0,
            )
        )
        frame.header.timestamp_us = now_us()
        return frame.SerializeToString()

    async def serve(self, reader: FrameReader, writer: FrameWriter) -> None:
        """Open the link on a fresh stream and deliver until it ends.

        Returns normally when the publisher closes the link; raises :class:`ConnectionLost`
        when the stream breaks and a :class:`ProtocolError` when the publisher misbehaves.
        """
        if not self.qos.reliable:
            self.last_delivered = 0
        self._window = self.qos.depth
        self._unreturned = 0
        await writer.write_frames([self.opening()])
        self._state = self.router.lowlevel.attach_source(self.route, self.msg_type, self)
        reliable = self.qos.reliable
        threshold = max(1, self.qos.depth // 2)
        read_frames = reader.read_frames
        decode = self._decode
        parse_frame = control_pb2.DataFrame.FromString
        try:
            while True:
                bodies = await read_frames()
                if not bodies:
                    raise ConnectionLost(
                        f"publisher {self.peer} ended the link on {self.route}",
                        peer=self.peer,
                        route=str(self.route),
                    )
                credit = 0
                for body in bodies:
                    try:
                        frame = parse_frame(body)
                    except DecodeError:
                        # parse_message says what is wrong with it.
                        frame = parse_message(body, control_pb2.DataFrame)
                    if not frame.HasField("batch"):
                        self._other_frame(frame)
                        return
                    count, first, msgs = decode(frame.batch)
                    credit += count
                    if not msgs:
                        continue
                    # Deliver at once when every subscriber has room (the usual case), else
                    # in the chunks that fit, waiting in between.
                    state = self._state
                    if state is not None and (
                        not state.local_blocking_sinks
                        or state.min_room(local_only=True) >= len(msgs)
                    ):
                        sinks = state.local_sinks
                        for sink in sinks:
                            sink.offer_many(msgs)
                        if not sinks:
                            self.unrouted += len(msgs)
                    else:
                        await self._offer(msgs)
                    self.received += len(msgs)
                    self.last_delivered = first + len(msgs) - 1
                # Credit goes back in bulk, once half the window is used (an ack per batch
                # would double the frames, encryptions and syscalls of a request/reply), and
                # at once on a reliable link that has caught up, so its publisher can let go
                # of what it keeps for retransmission.
                unreturned = self._unreturned + credit
                if unreturned >= threshold or (reliable and unreturned and reader.buffered == 0):
                    self._unreturned = 0
                    await self._return_credit(writer, unreturned)
                else:
                    self._unreturned = unreturned
        finally:
            self.detach()

    async def _return_credit(self, writer: FrameWriter, credit: int) -> None:
        """Grant ``credit`` more messages, acknowledging what was delivered."""
        self._window += credit
        ack = control_pb2.DataFrame(
            ack=data_pb2.Ack(
                link_id=self.link_id, cumulative_sequence=self.last_delivered, credit=credit
            )
        )
        # An ack cut in half would poison the stream: let it finish (briefly).
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await writer.write_frames([ack.SerializeToString()])

    def detach(self) -> None:
        """Unlink from the local subscribers (idempotent)."""
        state, self._state = self._state, None
        if state is not None:
            self.router.lowlevel.detach_source(state, self)

    def _other_frame(self, frame: control_pb2.DataFrame) -> None:
        """A frame that is not a batch: the publisher's last word, or a protocol error.

        Returns when the publisher closed the link in good order; raises otherwise.
        """
        kind = frame.WhichOneof("body")
        if kind is None:
            raise MalformedFrame(f"{frame.DESCRIPTOR.full_name} has no body")
        if kind == "result":
            code = frame.result.code
            if code in (result_pb2.Result.OK, result_pb2.Result.CLOSED):
                return
            if code in (result_pb2.Result.SLOW_SUBSCRIBER, result_pb2.Result.RESUME_REFUSED):
                self.stale = True
            raise error_for(frame.result, f"publisher {self.peer} on {self.route}")
        raise ProtocolError(f"unexpected {kind!r} frame from the publisher")

    def _decode(self, batch: data_pb2.DataBatch) -> tuple[int, int, list[Any]]:
        """Check and decode one batch.

        Returns how many messages it carried (the credit it used), the sequence number of the
        first new one, and the new messages (not those already delivered).
        """
        link_id = batch.link_id
        if link_id and link_id != self.link_id:
            raise ProtocolError(f"batch for link {link_id} on link {self.link_id}")
        if batch.compression:
            compression.decompress_batch(batch, self._max_frame_size)
        payloads = batch.messages
        count = len(payloads)
        if count > self._window:
            raise ProtocolError(
                f"publisher sent {count} messages on {self.route} with {self._window} credit"
            )
        self._window -= count
        first = batch.first_sequence
        dropped = batch.dropped_since_last
        if dropped:
            self.dropped_by_publisher += dropped
        last_delivered = self.last_delivered
        skip = 0
        if first <= last_delivered:
            skip = last_delivered - first + 1
            if skip >= count:
                return count, first, []
            first = last_delivered + 1
        elif self.qos.reliable and first - last_delivered - 1 > dropped:
            # A reliable link skips only messages the publisher reports as expired.
            raise ProtocolError(
                f"reliable link on {self.route} skipped from {last_delivered} to {first}"
            )
        parse = self.msg_type.FromString
        try:
            msgs: list[Any] = [parse(payload) for payload in payloads[skip:]]
        except DecodeError:
            raise MalformedFrame(
                f"a message on {self.route} is not a valid {self.msg_type.DESCRIPTOR.full_name}"
            ) from None
        return count, first, msgs

    async def _offer(self, msgs: list[Any]) -> None:
        done = 0
        while done < len(msgs):
            state = self._state
            if state is None or not state.local_sinks:
                self.unrouted += len(msgs) - done
                return
            chunk = len(msgs) - done
            if state.local_blocking_sinks:
                room = state.min_room(local_only=True)
                if room <= 0:
                    full = state.first_full_sink(local_only=True)
                    if full is not None:
                        await full.wait_room()
                    continue
                chunk = min(chunk, room)
            part = msgs if chunk == len(msgs) else msgs[done : done + chunk]
            for sink in state.local_sinks:
                sink.offer_many(part)
            done += chunk
