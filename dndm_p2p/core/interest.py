"""The subscriber's handle: an Interest in messages of one type on a route or pattern."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import trio
from google.protobuf.message import Message

from dndm_p2p.core.handle import Handle
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.queue import DeliveryQueue
from dndm_p2p.core.route import Route
from dndm_p2p.errors import CallbackError, Closed, ConfigError, WouldBlock

__all__ = ["Callback", "Interest", "InterestStats", "Unregister"]

T = TypeVar("T", bound=Message)

#: A subscriber callback: a plain function or a coroutine function taking one message.
Callback = Callable[[T], None] | Callable[[T], Awaitable[None]]

#: Detaches a closing interest from every route it is attached to; called once, by its close.
Unregister = Callable[["Interest[Any]"], None]

#: How many messages a consumer takes without yielding to the scheduler when they are ready.
_YIELD_EVERY = 256


@dataclass(frozen=True, slots=True)
class InterestStats:
    """Counters of one interest: messages received, dropped by the overflow policy, queued now."""

    received: int
    dropped: int
    queued: int


class Interest(Handle, Generic[T]):
    """A declared interest in ``T`` messages on a route or pattern.

    Create one with ``Router.subscribe`` (or ``Node.subscribe``) and use it as an async context
    manager.  It is an async iterator of messages (iteration ends when it closes), with
    :meth:`receive`, :meth:`receive_nowait` and :meth:`receive_batch`; or, with a callback, the
    router calls the callback for each message in a task it owns.

    Every interest gets every message of every intent it is linked to (fan-out and fan-in); its
    QoS decides what happens when its queue is full, and drops are counted in :attr:`stats`.
    It holds its queue and the callback that unregisters it, never the router.
    """

    __slots__ = (
        "_error",
        "_since_yield",
        "_unregister",
        "msg_type",
        "pattern",
        "qos",
        "queue",
        "route",
    )

    def __init__(
        self,
        unregister: Unregister,
        msg_type: type[T],
        qos: QoS,
        route: Route | None = None,
        pattern: Pattern | None = None,
        *,
        type_name: str = "",
        peer: str | None = None,
    ) -> None:
        self._unregister: Unregister | None = unregister
        self.msg_type = msg_type
        self.qos = qos
        #: The exact route, or ``None`` for a pattern interest.
        self.route = route
        #: The path pattern of a pattern interest, else ``None``.
        self.pattern = pattern
        link_route = route if route is not None else _PatternRoute(type_name, pattern)
        super().__init__(link_route, peer, qos)
        self.queue: DeliveryQueue[T] = DeliveryQueue(qos, self.link, self.tracker)
        self._error: BaseException | None = None
        self._since_yield = 0

    # -- state -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the interest (or its router) closed."""
        return self.queue.closed

    @property
    def intents(self) -> frozenset[LinkInfo]:
        """The intents linked to this interest right now."""
        return self.tracker.snapshot()

    @property
    def stats(self) -> InterestStats:
        """Counters: received, dropped by the overflow policy, and queued now."""
        queue = self.queue
        return InterestStats(queue.taken, queue.dropped, len(queue))

    @property
    def dropped(self) -> int:
        """Messages lost to this interest's overflow policy so far."""
        return self.queue.dropped

    @property
    def error(self) -> BaseException | None:
        """The error that closed this interest (a failing callback), if any."""
        return self._error

    async def wait_intent(self) -> frozenset[LinkInfo]:
        """Wait until at least one intent is linked and return the linked set."""
        return await self._wait_any_link()

    # -- receiving ---------------------------------------------------------------------------

    def _raise_closed(self) -> NoReturn:
        if self._error is not None:
            raise self._error
        raise Closed(f"interest in {self.link.route} is closed")

    async def _wait_ready(self) -> None:
        """Return once a message is queued; raise why the interest closed if it does."""
        await trio.lowlevel.checkpoint_if_cancelled()
        queue = self.queue
        if queue.closed:
            self._raise_closed()
        if len(queue):
            await self._maybe_yield()
        else:
            try:
                await queue.wait_nonempty()
            except Closed:
                self._raise_closed()

    async def receive(self) -> T:
        """Wait for and return the next message; raise :class:`Closed` once closed."""
        await self._wait_ready()
        return self.queue.take_one()

    def receive_nowait(self) -> T:
        """Return the next message if one is queued, else raise :class:`WouldBlock`."""
        queue = self.queue
        if not queue.items:
            if queue.closed:
                self._raise_closed()
            raise WouldBlock(f"no message queued for {self.link.route}", route=str(self.link.route))
        return queue.take_one()

    async def receive_batch(self, max_n: int = 1024) -> list[T]:
        """Wait for at least one message and return up to ``max_n`` queued ones, oldest first."""
        if max_n < 1:
            raise ConfigError(f"max_n must be at least 1, not {max_n}")
        await self._wait_ready()
        return self.queue.take(max_n)

    async def _maybe_yield(self) -> None:
        # A ready message is returned without a schedule point, but never more than
        # _YIELD_EVERY times in a row, so a busy consumer cannot starve other tasks.
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def __aiter__(self) -> Interest[T]:
        return self

    async def __anext__(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        queue = self.queue
        if queue.items:
            await self._maybe_yield()
            return queue.take_one()
        try:
            await queue.wait_nonempty()
        except Closed:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        return queue.take_one()

    # -- callback mode ---------------------------------------------------------------------------

    async def run_callback(self, callback: Callback[T]) -> None:
        """Call ``callback`` for every message until the interest closes.

        The router runs this in its own nursery for ``subscribe(..., callback=...)``.  If the
        callback raises, the interest closes and keeps the error as a :class:`CallbackError`,
        which the application sees when it leaves the ``async with`` block or uses the handle.
        """
        queue = self.queue
        try:
            while True:
                try:
                    await queue.wait_nonempty()
                except Closed:
                    return
                for msg in queue.take(1024):
                    result = callback(msg)
                    if result is not None:
                        await result
                await trio.lowlevel.checkpoint()
        except Exception as exc:
            error = CallbackError(f"callback of interest in {self.link.route} raised {exc!r}")
            error.__cause__ = exc
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self.close()

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Unlink and unregister at once (idempotent); queued messages are discarded."""
        unregister = self._unregister
        if unregister is None:
            return
        self._unregister = None
        unregister(self)
        self.queue.close()
        self.tracker.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; when the block raised nothing, raise the error that closed it (if any)."""
        if exc is None and self._error is not None:
            self.close()
            raise self._error
        await self.aclose()

    def _describe(self) -> str:
        return str(self.route if self.route is not None else self.pattern)


class _PatternRoute(Route):
    """Stands in for a pattern in :class:`LinkInfo` (``Type@robot.*.temp``); never linked on."""

    __slots__ = ()

    def __init__(self, type_name: str, pattern: Pattern | None) -> None:
        self._text = self._id = f"{type_name}@{pattern}"
        self._msg_type = None

    def bind(self, msg_type: type[Message]) -> Route:
        """Patterns are not bound; returns itself."""
        return self
