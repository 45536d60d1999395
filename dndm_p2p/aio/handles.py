"""asyncio handles: :class:`Intent` and :class:`Interest` over the trio handles of the core.

Each wraps one trio handle (``.trio``) and the :class:`~dndm_p2p.aio.runtime.GuestRuntime` it
lives in.  Whatever can be done without waiting is done by a direct call on the asyncio thread
(trio shares it in guest mode): a send to subscribers with room, a receive of a queued message.
Only a wait (a full ``block`` subscriber, an empty queue, no interest yet) becomes a trio task.
Errors are the core's own exception classes.  Like the trio handles, a producer or consumer
that never has to wait yields to the asyncio loop every few dozen messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Generic, Self, TypeVar

from google.protobuf.message import Message

from dndm_p2p.aio.runtime import GuestRuntime
from dndm_p2p.core.intent import Intent as TrioIntent
from dndm_p2p.core.intent import IntentStats
from dndm_p2p.core.interest import Interest as TrioInterest
from dndm_p2p.core.interest import InterestStats
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.errors import Closed, WouldBlock

__all__ = ["Intent", "Interest"]

T = TypeVar("T", bound=Message)

#: Sends or receives done without waiting before the handle yields to the asyncio loop.
_YIELD_EVERY = 64


class _AioHandle:
    __slots__ = ("_runtime", "_since_yield")

    def __init__(self, runtime: GuestRuntime) -> None:
        self._runtime = runtime
        self._since_yield = 0

    async def _maybe_yield(self) -> None:
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await asyncio.sleep(0)


class Intent(_AioHandle, Generic[T]):
    """An intent to publish ``T`` messages, for asyncio code (see :class:`dndm_p2p.Intent`).

    ``async with`` closes it on exit; :meth:`send` waits only while a ``block`` subscriber is
    full, :meth:`wait_interest` until someone listens.
    """

    __slots__ = ("trio",)

    def __init__(self, runtime: GuestRuntime, handle: TrioIntent[T]) -> None:
        super().__init__(runtime)
        #: The trio handle this one drives.
        self.trio = handle

    @property
    def route(self) -> str:
        """The route's text (``Type@path`` or ``prefix#hash``)."""
        return str(self.trio.route)

    @property
    def closed(self) -> bool:
        """True once closed (by :meth:`close`, the block, or the router)."""
        return self.trio.closed

    @property
    def interests(self) -> frozenset[LinkInfo]:
        """The interests linked right now."""
        return self.trio.interests

    @property
    def stats(self) -> IntentStats:
        """The trio intent's counters."""
        return self.trio.stats

    async def wait_interest(self) -> frozenset[LinkInfo]:
        """Wait until an interest is linked (at once if one is); raise :class:`Closed` if the
        intent closes first."""
        if self.trio.interests:
            return self.trio.interests
        return await self._runtime.run(self.trio.wait_interest)

    async def send(self, msg: T) -> None:
        """Send one message to every linked subscriber (all or none, as the trio intent)."""
        try:
            self.trio.send_nowait(msg)
        except WouldBlock:
            await self._runtime.run(self.trio.send, msg)
            return
        await self._maybe_yield()

    def send_nowait(self, msg: T) -> None:
        """Send without waiting; :class:`WouldBlock` when a ``block`` subscriber is full."""
        self.trio.send_nowait(msg)

    async def send_many(self, msgs: Sequence[T]) -> None:
        """Send a batch, in order, as one batch per subscriber (waits only while a ``block``
        subscriber has no room for it)."""
        try:
            self.trio.send_many_nowait(msgs)
        except WouldBlock:
            await self._runtime.run(self.trio.send_many, msgs)
            return
        await asyncio.sleep(0)

    def close(self) -> None:
        """Unlink at once (idempotent)."""
        self.trio.close()

    async def aclose(self) -> None:
        """Close."""
        self.close()

    async def __aenter__(self) -> Self:
        if self.closed:
            raise Closed(f"intent on {self.route} is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<aio {self.trio!r}>"


class Interest(_AioHandle, Generic[T]):
    """An interest in ``T`` messages, for asyncio code (see :class:`dndm_p2p.Interest`).

    ``async with`` closes it on exit (and raises the error that closed it, if any); ``async
    for`` yields messages until it closes.
    """

    __slots__ = ("trio",)

    def __init__(self, runtime: GuestRuntime, handle: TrioInterest[T]) -> None:
        super().__init__(runtime)
        #: The trio handle this one drives.
        self.trio = handle

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self.trio.closed

    @property
    def intents(self) -> frozenset[LinkInfo]:
        """The intents linked right now."""
        return self.trio.intents

    @property
    def stats(self) -> InterestStats:
        """The trio interest's counters."""
        return self.trio.stats

    @property
    def error(self) -> BaseException | None:
        """The error that closed this interest (a failing callback), if any."""
        return self.trio.error

    async def wait_intent(self) -> frozenset[LinkInfo]:
        """Wait until an intent is linked (at once if one is)."""
        if self.trio.intents:
            return self.trio.intents
        return await self._runtime.run(self.trio.wait_intent)

    async def receive(self) -> T:
        """The next message; waits while none is queued; :class:`Closed` once closed."""
        try:
            msg = self.trio.receive_nowait()
        except WouldBlock:
            return await self._runtime.run(self.trio.receive)
        await self._maybe_yield()
        return msg

    def receive_nowait(self) -> T:
        """The next queued message, else :class:`WouldBlock`."""
        return self.trio.receive_nowait()

    async def receive_batch(self, max_n: int = 1024) -> list[T]:
        """At least one and up to ``max_n`` queued messages, oldest first."""
        queue = self.trio.queue
        if len(queue) and not queue.closed and max_n >= 1:
            await self._maybe_yield()
            return queue.take(max_n)
        return await self._runtime.run(self.trio.receive_batch, max_n)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        try:
            msg = self.trio.receive_nowait()
        except WouldBlock:
            return await self._runtime.run(self.trio.__anext__)
        except Closed:
            if self.trio.error is not None:
                raise
            raise StopAsyncIteration from None
        await self._maybe_yield()
        return msg

    def close(self) -> None:
        """Unlink at once (idempotent); queued messages are discarded."""
        self.trio.close()

    async def aclose(self) -> None:
        """Close."""
        self.close()

    async def __aenter__(self) -> Self:
        if self.closed:
            if self.trio.error is not None:
                raise self.trio.error
            raise Closed(f"interest in {self.trio.link.route} is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; when the block raised nothing, raise the error that closed it (if any)."""
        await self.aclose()
        if exc is None and self.trio.error is not None:
            raise self.trio.error

    def __repr__(self) -> str:
        return f"<aio {self.trio!r}>"
