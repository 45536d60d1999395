"""The bounded queue behind every local interest, and the contract every sink follows.

Producers put messages into sinks synchronously: ``offer`` and ``offer_many`` never block and
never yield, so one ``send`` reaches every subscriber of a route atomically (no other task runs in
between) and spawns no task.  A sink whose policy is ``block`` reports its free ``room`` and lets a
producer ``wait_room``; the producer checks the room of every blocking sink *before* it offers a
message to any sink, so a message reaches all subscribers or none.

The consumer side wakes at most once per batch: a producer that appends to a queue with a parked
consumer reschedules that one task, and the consumer then takes everything that is queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import trio

from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.qos import Overflow, QoS
from dndm_p2p.errors import Closed

__all__ = ["DeliveryQueue", "Sink"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
_UNBOUNDED_ROOM = 1 << 62


class Sink(Protocol[T_contra]):
    """Where a route delivers messages: a local interest's queue, or (for the node) a remote link.

    ``offer``/``offer_many`` never block; they apply the sink's own overflow policy.  ``room``
    and ``wait_room`` matter only for sinks whose ``blocking`` is true.  ``link`` describes the
    subscriber to the intents it is linked with, and ``tracker`` records those intents.
    """

    blocking: bool
    link: LinkInfo
    tracker: LinkTracker

    def offer(self, msg: T_contra) -> None:
        """Queue one message, never blocking."""

    def offer_many(self, msgs: Sequence[T_contra]) -> None:
        """Queue many messages in order, never blocking."""

    def room(self) -> int:
        """Messages that fit without dropping (only meaningful for blocking sinks)."""

    async def wait_room(self) -> None:
        """Return when ``room()`` is positive or the sink closed."""


class DeliveryQueue(Generic[T]):
    """A bounded FIFO with an overflow policy, one consumer wake-up per batch.

    Counters: ``dropped`` (messages lost to the overflow policy) and ``taken`` (messages handed
    to the consumer).  Closing discards what is queued and wakes every waiter.
    """

    __slots__ = (
        "__weakref__",
        "_consumers",
        "_depth",
        "_overflow",
        "_room_waiters",
        "blocking",
        "closed",
        "dropped",
        "items",
        "link",
        "taken",
        "tracker",
    )

    def __init__(self, qos: QoS, link: LinkInfo, tracker: LinkTracker) -> None:
        self._depth = qos.depth
        self._overflow = qos.overflow
        #: The queued messages, oldest first (consumers read it; only this class changes it).
        # A deque with maxlen evicts the oldest item on append: exactly DROP_OLDEST, done in C.
        self.items: deque[T] = (
            deque(maxlen=qos.depth) if qos.overflow is Overflow.DROP_OLDEST else deque()
        )
        self.blocking = qos.overflow is Overflow.BLOCK
        self.link = link
        self.tracker = tracker
        self.dropped = 0
        self.taken = 0
        self.closed = False
        self._consumers: list[trio.lowlevel.Task] = []
        self._room_waiters: list[trio.lowlevel.Task] = []

    def __len__(self) -> int:
        return len(self.items)

    # -- producer side -----------------------------------------------------------------------

    def offer(self, msg: T) -> None:
        """Queue one message, applying the overflow policy when full."""
        buf = self.items
        if len(buf) >= self._depth:
            if self.closed:
                return
            self.dropped += 1
            if self._overflow is Overflow.DROP_NEWEST:
                return
            # DROP_OLDEST: the bounded deque evicts on append.  BLOCK never gets here, because
            # producers check room() first.
        buf.append(msg)
        if self._consumers:
            trio.lowlevel.reschedule(self._consumers.pop(0))

    def offer_many(self, msgs: Sequence[T]) -> None:
        """Queue messages in order, applying the overflow policy to what does not fit."""
        if self.closed:
            return
        buf = self.items
        free = self._depth - len(buf)
        count = len(msgs)
        if count > free:
            if self._overflow is Overflow.DROP_NEWEST:
                self.dropped += count - max(free, 0)
                msgs = msgs[: max(free, 0)]
            else:
                self.dropped += count - free
        buf.extend(msgs)
        if self._consumers and buf:
            trio.lowlevel.reschedule(self._consumers.pop(0))

    def room(self) -> int:
        """Free slots; unbounded for a closed queue (producers must never wait on it)."""
        if self.closed:
            return _UNBOUNDED_ROOM
        return self._depth - len(self.items)

    async def wait_room(self) -> None:
        """Park until the consumer takes something or the queue closes."""
        if self.closed or len(self.items) < self._depth:
            await trio.lowlevel.checkpoint()
            return
        await _park(self._room_waiters)

    # -- consumer side -----------------------------------------------------------------------

    async def wait_nonempty(self) -> None:
        """Park until a message is queued; raise :class:`Closed` if the queue is closed."""
        while not self.items:
            if self.closed:
                raise Closed("interest is closed")
            await _park(self._consumers)

    def take(self, max_n: int) -> list[T]:
        """Remove and return up to ``max_n`` queued messages (possibly none)."""
        buf = self.items
        if len(buf) <= max_n:
            items = list(buf)
            buf.clear()
        else:
            popleft = buf.popleft
            items = [popleft() for _ in range(max_n)]
        self.taken += len(items)
        if self._room_waiters:
            self._wake_all(self._room_waiters)
        return items

    def take_one(self) -> T:
        """Remove and return the oldest message; the caller checked that there is one."""
        item = self.items.popleft()
        self.taken += 1
        if self._room_waiters:
            self._wake_all(self._room_waiters)
        return item

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Discard queued messages and wake every consumer and blocked producer."""
        self.closed = True
        self.items.clear()
        self._wake_all(self._consumers)
        self._wake_all(self._room_waiters)

    @staticmethod
    def _wake_all(tasks: list[trio.lowlevel.Task]) -> None:
        waiting = tasks[:]
        tasks.clear()
        for task in waiting:
            trio.lowlevel.reschedule(task)


async def _park(waiters: list[trio.lowlevel.Task]) -> None:
    """Park the current task in ``waiters`` until someone reschedules it (or it is cancelled)."""
    task = trio.lowlevel.current_task()
    waiters.append(task)

    def abort(_: object) -> trio.lowlevel.Abort:
        # Cancelled while parked: leave the list so nobody reschedules a task that moved on.
        if task in waiters:
            waiters.remove(task)
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)
