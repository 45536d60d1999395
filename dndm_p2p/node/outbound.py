"""The publisher's end of a remote link: a peer's subscription to one of our routes.

The link is a sink on the route, so local intents deliver to it exactly as to a local
interest, but its queue belongs to the publisher: it never makes a producer wait, whatever the
subscriber asked for (``block`` and ``reliable`` included; the subscriber applies its own depth
and overflow policy on its side).  Its depth is the route's bound (from its
:class:`~dndm_p2p.node.slow_subscribers.SlowSubscriberPolicy`), or the subscriber's own depth
when that is smaller and the subscriber drops on overflow anyway; when it is full, messages are
dropped for this subscriber alone, counted and reported to it in the next batch, and under the
``evict`` policy a link that lags for the deadline is evicted.  One writer task drains it: it
takes whatever is queued, up to the credit the subscriber granted, serializes it into one
``DataBatch`` frame and writes it with one stream write.

Reliable links number their messages, keep what is unacknowledged, and survive a broken stream:
the node keeps the link attached for a grace period, and a new stream that resumes the same
link gets everything after the subscriber's last delivered sequence number, in order, once
(messages whose TTL, checked at every batch and every ack, ran out meanwhile are reported as
dropped). What a reliable link holds is bounded (``reliable_depth`` queued, as many
unacknowledged, and the peer's memory budget): a link that would need one more is *given up*
rather than allowed to lose a message silently or to hold producers back, and its subscriber
is told with ``SLOW_SUBSCRIBER`` (or ``RESOURCE_LIMIT_EXCEEDED`` when the budget ran out).

With a :class:`~dndm_p2p.node.resources.PeerAccount`, the link holds one ``links`` unit and its
queue depth in ``queue_slots`` from its creation until :meth:`OutboundLink.detach`, and every
unacknowledged message's bytes in ``memory`` (use ``unacked``) until it is acknowledged, expires
or the link is detached; a message that does not fit the budget is not sent, and the stream
fails with :class:`~dndm_p2p.errors.ResourceLimitExceeded`.  What its queue keeps alive is held
in ``memory`` too (use ``queued``), estimated as the queue's length times the size of its newest
message, at every batch and at least once a second while the link waits for credit: at most
``queue_bytes`` per link and within the peer's budget.  Past that, an unreliable link drops what
does not fit (counted and reported as drops); a reliable link ends with
``ResourceLimitExceeded``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from dndm_p2p.core.adverts import qos_from_wire
from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.lowlevel import RouteState
from dndm_p2p.core.qos import Overflow, QoS, SlowSubscriberMode
from dndm_p2p.core.queue import DeliveryQueue
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import (
    Closed,
    ConnectionLost,
    ProtocolError,
    ResourceLimitExceeded,
    SlowSubscriber,
)
from dndm_p2p.node.results import error_for
from dndm_p2p.node.slow_subscribers import SlowSubscriberPolicy
from dndm_p2p.nurseries import race
from protocols import compression
from protocols.framing import FrameReader, FrameWriter, read_message
from protocols.v1 import control_pb2, data_pb2, result_pb2

if TYPE_CHECKING:
    from dndm_p2p.node.resources import PeerAccount

__all__ = ["MAX_BATCH_MESSAGES", "GiveUp", "OutboundLink"]

#: Most messages in one DataBatch frame.
MAX_BATCH_MESSAGES = 4096
#: Serialized bytes after which a batch is closed even if more is queued.
MAX_BATCH_BYTES = 1 << 20
#: Bytes an unacknowledged message is charged besides its payload (its deque entry and tuple).
UNACKED_OVERHEAD = 96
#: Bytes a queued message is charged besides its serialized size (the Python object).
QUEUED_OVERHEAD = 64
#: Seconds between checks of the queue's size while the link waits for credit.
QUEUE_CHECK_INTERVAL = 1.0


def now_us() -> int:
    """Wall-clock microseconds since the Unix epoch (the wire's time unit)."""
    return time.time_ns() // 1000


#: Told when a link is evicted or given up: (the link, the error its subscriber is sent).
GiveUp = Callable[["OutboundLink", SlowSubscriber], None]


class OutboundLink:
    """One peer's subscription to one of our routes (see the module docstring).

    Invariants: the queue never blocks a producer; a reliable link's queue never drops (a drop
    gives the link up first); once :attr:`given_up` is set the link is detached and ends.
    """

    def __init__(
        self,
        router: Router,
        route: Route,
        peer: str,
        opening: data_pb2.LinkOpen,
        *,
        policy: SlowSubscriberPolicy | None = None,
        message_ttl: float = 30.0,
        max_frame_size: int,
        on_give_up: GiveUp | None = None,
        depth: int | None = None,
        account: PeerAccount | None = None,
        queue_bytes: int | None = None,
    ) -> None:
        """``depth`` replaces the queue depth the subscriber asked for (the publisher's cap);
        ``account`` is charged for what the link holds (see the module docstring): the caller
        reserved ``links`` and ``queue_slots`` for it, which :meth:`detach` releases."""
        self.router = router
        self.route = route
        self.peer = peer
        self.link_id = opening.link_id
        self.qos: QoS = qos_from_wire(opening.qos)
        if depth is not None and depth != self.qos.depth:
            self.qos = dataclasses.replace(self.qos, depth=depth)
        self._account = account
        #: Bytes charged for :attr:`unacked`.
        self.unacked_bytes = 0
        #: Bytes charged for what the queue holds (an estimate, see the module docstring).
        self.queued_bytes = 0
        self._queue_bytes = queue_bytes
        #: Messages the queue dropped to stay within its memory (counted as drops).
        self.trimmed = 0
        self.policy = policy or SlowSubscriberPolicy()
        self._on_give_up = on_give_up
        #: Why the publisher evicted or gave up the link (``None`` while it runs).
        self.given_up: SlowSubscriber | None = None
        # The publisher's queue never blocks.  A subscriber that would rather block than lose
        # gets the route's whole queue bound (then the newest are dropped, counted, reported);
        # one that drops anyway gets its own depth, within that bound; a reliable link holds up
        # to its bound and is given up rather than dropping.
        if self.qos.reliable:
            queue_qos = QoS(self.policy.reliable_depth, Overflow.DROP_NEWEST)
        elif self.qos.overflow is Overflow.BLOCK:
            queue_qos = QoS(self.policy.queue_depth, Overflow.DROP_NEWEST)
        else:
            queue_qos = QoS(min(self.qos.depth, self.policy.queue_depth), self.qos.overflow)
        self.queue: DeliveryQueue[Any] = DeliveryQueue(
            queue_qos, LinkInfo(self.link_id, route, peer, self.qos), LinkTracker()
        )
        self.compression = opening.chosen
        self.credit = opening.initial_credit
        self._credit_changed = trio.Event()
        self.next_sequence = 1
        self.acked = 0
        self.sent = 0
        self.expired = 0
        self._unreported_expired = 0
        self.compressed_batches = 0
        self._reported_drops = 0
        self._message_ttl = message_ttl
        self._max_frame_size = max_frame_size
        #: Reliable links: (sequence, payload, enqueue time) not yet acknowledged.
        self.unacked: deque[tuple[int, bytes, float]] = deque()
        self._state: RouteState | None = None
        self.attached = False
        self._serving: trio.CancelScope | None = None
        self._idle = trio.Event()
        self._resume_after = 0

    @property
    def reliable(self) -> bool:
        """True when the subscriber asked for acknowledged, resumable delivery."""
        return self.qos.reliable

    def attach(self) -> None:
        """Attach the sink to the route (raises UnknownRoute when we no longer publish it)."""
        if self._state is None:
            self._state = self.router.lowlevel.attach_remote_sink(self.route, self.queue)
            self.attached = True

    def detach(self) -> None:
        """Unlink from the route, discard what is queued and release what the link holds
        (idempotent)."""
        state, self._state = self._state, None
        if state is not None:
            self.router.lowlevel.detach_sink(state, self.queue)
        self.attached = False
        self.queue.close()
        self.queue.tracker.close()
        self._credit_changed.set()
        self.unacked.clear()
        self._release_unacked(self.unacked_bytes)
        if self._account is not None and self.queued_bytes:
            self._account.release("memory", self.queued_bytes, "queued")
        self.queued_bytes = 0
        account, self._account = self._account, None
        if account is not None:
            account.release("links", 1, "links")
            account.release("queue_slots", self.qos.depth, "queue_slots")

    def _release_unacked(self, size: int) -> None:
        if size:
            self.unacked_bytes -= size
            if self._account is not None:
                self._account.release("memory", size, "unacked")

    def _bound_queue(self) -> None:
        """Charge what the queue holds to the peer's memory, and keep it within bounds (see
        the module docstring); raises :class:`ResourceLimitExceeded` for a reliable link."""
        account = self._account
        if account is None:
            return
        items = self.queue.items
        count = len(items)
        size = items[-1].ByteSize() + QUEUED_OVERHEAD if count else 0
        wanted = count * size
        cap = self._queue_bytes
        error: ResourceLimitExceeded | None = None
        if cap is not None and wanted > cap:
            error = ResourceLimitExceeded(
                f"{self.peer}'s link on {self.route} would hold {wanted} bytes of queued "
                f"messages, over the {cap}-byte limit of a link",
                resource="memory",
                use="queued",
                scope="link",
                size=wanted,
                limit=cap,
                peer=self.peer,
                route=str(self.route),
            )
            account.manager.count_refusal(error)
            wanted = (cap // size) * size
        delta = wanted - self.queued_bytes
        if delta > 0:
            try:
                account.reserve("memory", delta, "queued")
            except ResourceLimitExceeded as exc:
                error = exc
                room = account.manager.available(self.peer, "memory")
                wanted = self.queued_bytes + (room // size) * size if size else 0
                delta = wanted - self.queued_bytes
                if delta > 0:
                    account.reserve("memory", delta, "queued")
        if delta < 0:
            account.release("memory", -delta, "queued")
        self.queued_bytes = wanted
        if error is None:
            return
        if self.reliable:
            raise error
        keep = wanted // size if size else 0
        excess = count - keep
        if excess > 0:
            if self.qos.overflow is Overflow.DROP_NEWEST:
                for _ in range(excess):
                    items.pop()
            else:
                self.queue.take(excess)
                self.queue.taken -= excess
            self.queue.dropped += excess
            self.trimmed += excess

    def _expire_unacked(self) -> int:
        """Drop unacknowledged messages older than the TTL; returns how many."""
        unacked = self.unacked
        if not unacked:
            return 0
        cutoff = time.monotonic() - self._message_ttl
        if unacked[0][2] >= cutoff:
            return 0
        expired = freed = 0
        while unacked and unacked[0][2] < cutoff:
            freed += len(unacked.popleft()[1]) + UNACKED_OVERHEAD
            expired += 1
        self.expired += expired
        self._release_unacked(freed)
        return expired

    @property
    def serving(self) -> bool:
        """True while a stream carries this link."""
        return self._serving is not None

    def give_up(self, reason: str) -> None:
        """Evict the subscriber (idempotent): detach, stop serving, tell the owner once."""
        if self.given_up is not None or self.queue.closed:
            return
        self.given_up = SlowSubscriber(
            f"evicted from {self.route}: {reason}", peer=self.peer, route=str(self.route)
        )
        self.detach()
        if self._serving is not None:
            self._serving.cancel()
        if self._on_give_up is not None:
            self._on_give_up(self, self.given_up)

    async def watch(self) -> None:
        """Apply the route's policy until the link closes: give a reliable link up once its
        queue overflowed, and (``evict``) evict a link that lagged for the deadline.

        A link *lags* while messages wait for it and it takes none (it grants no credit, or
        its stream does not drain), or while its queue drops messages.
        """
        queue = self.queue
        deadline = self.policy.deadline
        evict = self.policy.mode is SlowSubscriberMode.EVICT
        step = min(deadline / 4, 0.25)
        lagging_since: float | None = None
        taken, dropped = queue.taken, queue.dropped
        while not queue.closed:
            await trio.sleep(step)
            if queue.closed:
                return
            if self.reliable and queue.dropped:
                self.give_up(
                    f"its reliable link lagged {self.policy.reliable_depth} messages behind"
                )
                return
            if not evict:
                continue
            lagging = (bool(queue.items) and queue.taken == taken) or queue.dropped != dropped
            taken, dropped = queue.taken, queue.dropped
            now = trio.current_time()
            if not lagging:
                lagging_since = None
            elif lagging_since is None:
                lagging_since = now - step
            elif now - lagging_since >= deadline:
                self.give_up(f"it lagged behind for {deadline:g} s")
                return

    async def serve(
        self,
        reader: FrameReader,
        writer: FrameWriter,
        opening: data_pb2.LinkOpen | None = None,
    ) -> None:
        """Run the link on one stream until it ends; return normally when the link closes.

        ``opening`` resumes a reliable link on a new stream: a stream that still carries it is
        stopped first, and what the subscriber already delivered is not sent again.  Raises
        :class:`ConnectionLost` when the stream breaks, :class:`ProtocolError` when the
        subscriber misbehaves.
        """
        while self._serving is not None:
            self._serving.cancel()
            await self._idle.wait()
        scope = self._serving = trio.CancelScope()
        self._idle = trio.Event()
        try:
            if opening is not None:
                self._resume(opening)

            async def write() -> None:
                try:
                    await self._resend_unacked(writer)
                    await self._write_batches(writer)
                except Closed:
                    return
                except ResourceLimitExceeded:
                    # The link cannot go on within its budget: it ends, and is not kept for a
                    # resume (which would be refused the same way).
                    self.queue.close()
                    self._credit_changed.set()
                    raise

            with scope:
                await race(write, lambda: self._read_acks(reader))
            if self.given_up is not None:
                raise self.given_up
            if scope.cancelled_caught:
                raise ConnectionLost(f"link on {self.route} moved to a newer stream")
        finally:
            self._serving = None
            self._idle.set()

    def _resume(self, opening: data_pb2.LinkOpen) -> None:
        self.credit = opening.initial_credit
        resume_after = opening.resume_after
        if resume_after >= self.next_sequence:
            raise ProtocolError(
                f"resume after {resume_after}, but only {self.next_sequence - 1} were sent"
            )
        freed = 0
        while self.unacked and self.unacked[0][0] <= resume_after:
            freed += len(self.unacked.popleft()[1]) + UNACKED_OVERHEAD
        self._release_unacked(freed)
        self.acked = max(self.acked, resume_after)
        self._resume_after = resume_after

    async def _resend_unacked(self, writer: FrameWriter) -> None:
        """Resend what the subscriber did not acknowledge, within its credit, in order."""
        self._expire_unacked()
        # Expired messages are not resent; the next batch reports the gap they leave between
        # the subscriber's resume point and the first message kept, so the subscriber accepts
        # it.  (Messages that expired while a stream carried them were delivered on it.)
        first_kept = self.unacked[0][0] if self.unacked else self.next_sequence
        self._unreported_expired = max(0, first_kept - self._resume_after - 1)
        pending = list(self.unacked)
        while pending:
            await self._wait_credit()
            chunk, pending = pending[: self.credit], pending[self.credit :]
            self.credit -= len(chunk)
            await writer.write_frames(
                [self._batch_frame(chunk[0][0], [payload for _, payload, _ in chunk])]
            )

    def _sendable(self) -> int:
        """Messages the writer may send now: the credit, and on a reliable link no more than
        keeps the unacknowledged ones within their bound."""
        if self.reliable:
            return min(self.credit, self.policy.reliable_depth - len(self.unacked))
        return self.credit

    async def _wait_credit(self) -> None:
        while self._sendable() <= 0:
            with trio.move_on_after(QUEUE_CHECK_INTERVAL):
                await self._credit_changed.wait()
            if self.queue.closed:
                raise Closed("link closed")
            self._bound_queue()

    async def _write_batches(self, writer: FrameWriter) -> None:
        queue = self.queue
        items = queue.items
        reliable = self.reliable
        write_frames = writer.write_frames
        # Room for a frame's envelope (link id, sequence numbers, header) besides the payloads.
        budget = self._max_frame_size - 1024
        account = self._account if reliable else None
        while True:
            if not items:
                await queue.wait_nonempty()
            if self._sendable() <= 0:
                await self._wait_credit()
            if reliable and queue.dropped:
                self.give_up(
                    f"its reliable link lagged {self.policy.reliable_depth} messages behind"
                )
                raise Closed("link given up")
            if reliable:
                self._expire_unacked()
            self._bound_queue()
            bodies: list[bytes] = []
            written = 0
            while items and self._sendable() > 0 and written < MAX_BATCH_BYTES:
                if len(items) == 1:
                    # The common case of a request/reply: one message, one frame, no loop.
                    payloads = [items[0].SerializeToString()]
                    size = len(payloads[0])
                    if account is not None:
                        account.reserve("memory", size + UNACKED_OVERHEAD, "unacked")
                    queue.take_one()
                else:
                    limit = min(len(items), self._sendable(), MAX_BATCH_MESSAGES)
                    # Serialize from the front of the queue and stop before a frame would grow
                    # past its limit: a batch is bounded in bytes as well as in messages.
                    payloads = []
                    size = 0
                    for msg in itertools.islice(items, limit):
                        payload = msg.SerializeToString()
                        if payloads and size + len(payload) > budget:
                            break
                        payloads.append(payload)
                        size += len(payload)
                    if account is not None:
                        account.reserve(
                            "memory", size + UNACKED_OVERHEAD * len(payloads), "unacked"
                        )
                    queue.take(len(payloads))
                count = len(payloads)
                first = self.next_sequence
                self.next_sequence += count
                self.credit -= count
                self.sent += count
                if reliable:
                    stamp = time.monotonic()
                    self.unacked_bytes += size + UNACKED_OVERHEAD * count
                    self.unacked.extend(
                        (first + i, payload, stamp) for i, payload in enumerate(payloads)
                    )
                bodies.append(self._batch_frame(first, payloads))
                written += size
            await write_frames(bodies)

    def _batch_frame(self, first: int, payloads: list[bytes]) -> bytes:
        # Built in place: constructing DataFrame(batch=...) would deep-copy every payload.
        frame = control_pb2.DataFrame()
        batch = frame.batch
        batch.link_id = self.link_id
        batch.first_sequence = first
        dropped = self.queue.dropped
        if dropped != self._reported_drops or self._unreported_expired:
            batch.dropped_since_last = dropped - self._reported_drops + self._unreported_expired
            self._reported_drops = dropped
            self._unreported_expired = 0
        batch.messages.extend(payloads)
        if self.compression and compression.compress_batch(batch, self.compression):
            self.compressed_batches += 1
        frame.header.timestamp_us = now_us()
        body = frame.SerializeToString()
        if len(body) > self._max_frame_size:
            raise ProtocolError(
                f"a message on {self.route} is {len(body)} bytes serialized, over the "
                f"{self._max_frame_size}-byte frame limit; it was not sent"
            )
        return body

    async def _read_acks(self, reader: FrameReader) -> None:
        while True:
            frame = await read_message(reader, control_pb2.DataFrame)
            if frame is None:
                raise ConnectionLost(
                    f"subscriber {self.peer} closed the link on {self.route}",
                    peer=self.peer,
                    route=str(self.route),
                )
            kind = frame.WhichOneof("body")
            if kind == "ack":
                self._on_ack(frame.ack)
            elif kind == "result":
                if frame.result.code == result_pb2.Result.CLOSED:
                    self.queue.close()
                    self._credit_changed.set()
                    return
                raise error_for(frame.result, f"subscriber {self.peer} on {self.route}")
            else:
                raise ProtocolError(f"unexpected {kind!r} frame from the subscriber")

    def _on_ack(self, ack: data_pb2.Ack) -> None:
        if ack.cumulative_sequence >= self.next_sequence:
            raise ProtocolError(
                f"ack for sequence {ack.cumulative_sequence}, never sent (next is "
                f"{self.next_sequence})"
            )
        progressed = False
        if ack.cumulative_sequence > self.acked:
            self.acked = ack.cumulative_sequence
            unacked = self.unacked
            freed = 0
            while unacked and unacked[0][0] <= self.acked:
                freed += len(unacked.popleft()[1]) + UNACKED_OVERHEAD
            self._release_unacked(freed)
            progressed = True  # room within the reliable bound, even without new credit
        if self.reliable:
            self._expire_unacked()
        if ack.credit:
            if self.credit + ack.credit > 1 << 31:
                raise ProtocolError("credit overflow")
            self.credit += ack.credit
            progressed = True
        if progressed:
            self._credit_changed.set()
            self._credit_changed = trio.Event()
