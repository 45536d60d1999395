"""The publisher's handle: an Intent to send messages of one type on one route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

import trio
from google.protobuf.message import Message

from dndm_p2p.core.handle import Handle
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.core.qos import NoInterestPolicy
from dndm_p2p.core.route import Route
from dndm_p2p.core.state import RouteState
from dndm_p2p.errors import Closed, NoInterest, TypeMismatch, WouldBlock

__all__ = ["Intent", "IntentStats"]

T = TypeVar("T", bound=Message)

#: How many awaited sends a producer makes without a schedule point when it never has to wait.
_YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class IntentStats:
    """Counters of one intent: messages handed to subscribers, and messages nobody took."""

    sent: int
    unrouted: int


class Intent(Handle, Generic[T]):
    """A declared intent to publish ``T`` messages on a route.

    Create one with ``Router.publish`` (or ``Node.publish``) and use it as an async context
    manager; leaving the block closes it.  The intent holds the state of its route (never the
    router): closing it unlinks it there.  The intent always knows which interests it is linked
    to (:attr:`interests`); :meth:`wait_interest` returns at once when one exists, and
    :meth:`links` yields link and unlink events.

    Sending hands the *same object* to every linked subscriber in this process (zero copy): do
    not mutate a message after sending it.  A send reaches all subscribers or, when one with the
    ``block`` policy is full, waits (``send``) or raises :class:`WouldBlock` (``send_nowait``)
    before any of them gets it.
    """

    __slots__ = (
        "_msg_type",
        "_no_interest",
        "_sent",
        "_since_yield",
        "_state",
        "_unrouted",
        "route",
    )

    def __init__(
        self,
        route: Route,
        msg_type: type[T],
        state: RouteState,
        no_interest: NoInterestPolicy,
        peer: str | None = None,
    ) -> None:
        self.route = route
        self._msg_type = msg_type
        self._state: RouteState | None = state
        self._no_interest = no_interest
        self._sent = 0
        self._unrouted = 0
        self._since_yield = 0
        super().__init__(route, peer)

    # -- state -----------------------------------------------------------------------------------

    @property
    def msg_type(self) -> type[T]:
        """The message class this intent sends."""
        return self._msg_type

    @property
    def closed(self) -> bool:
        """True once the intent (or its router) closed."""
        return self._state is None

    @property
    def interests(self) -> frozenset[LinkInfo]:
        """The interests this intent is linked to right now."""
        return self.tracker.snapshot()

    @property
    def has_interest(self) -> bool:
        """True when at least one interest is linked."""
        return bool(self.tracker)

    @property
    def stats(self) -> IntentStats:
        """Counters: messages sent to at least one subscriber, and messages dropped unrouted."""
        return IntentStats(self._sent, self._unrouted)

    async def wait_interest(self) -> frozenset[LinkInfo]:
        """Wait until at least one interest is linked and return the linked set.

        Returns at once when one already is.  Raises :class:`Closed` if the intent closes first.
        """
        return await self._wait_any_link()

    # -- sending ---------------------------------------------------------------------------------

    def _raise_closed(self) -> NoReturn:
        raise Closed(f"intent on {self.route} is closed")

    def _check(self, msg: object) -> RouteState:
        state = self._state
        if state is None:
            self._raise_closed()
        if type(msg) is not self._msg_type:
            raise TypeMismatch(
                f"route {self.route} carries {self._msg_type.__qualname__}, "
                f"not {type(msg).__qualname__}"
            )
        return state

    def _unroutable(self, count: int) -> None:
        self._unrouted += count
        if self._no_interest == "raise":
            raise NoInterest(f"nobody is subscribed to {self.route}")

    async def send(self, msg: T) -> None:
        """Send one message to every linked subscriber, waiting while a ``block`` one is full.

        Cancellation is checked on every call.  The producer yields to the scheduler whenever it
        has to wait, and otherwise once every few dozen messages rather than after each one:
        a yield per message costs a whole scheduler round, and the subscribers then wake once
        per batch instead of once per message.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._state
        if state is None or type(msg) is not self._msg_type:
            state = self._check(msg)
        while state.blocking_sinks:
            full = state.first_full_sink()
            if full is None:
                break
            await full.wait_room()
            state = self._check(msg)
        sinks = state.sinks
        if sinks:
            for sink in sinks:
                sink.offer(msg)
            self._sent += 1
        else:
            self._unroutable(1)
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, msg: T) -> None:
        """Send one message without waiting.

        Raises :class:`WouldBlock` (and delivers to nobody) when a ``block`` subscriber is full.
        """
        state = self._state
        if state is None or type(msg) is not self._msg_type:
            state = self._check(msg)
        if state.blocking_sinks and state.first_full_sink() is not None:
            raise WouldBlock(
                f"a subscriber of {self.route} with overflow='block' is full", route=str(self.route)
            )
        sinks = state.sinks
        if sinks:
            for sink in sinks:
                sink.offer(msg)
            self._sent += 1
        else:
            self._unroutable(1)

    def send_many_nowait(self, msgs: Sequence[T]) -> None:
        """Send a batch without waiting, as one batch per subscriber.

        Every message is type-checked first; raises :class:`WouldBlock` (and delivers to nobody)
        when a ``block`` subscriber has no room for the whole batch.
        """
        state = self._check_many(msgs)
        total = len(msgs)
        if state.blocking_sinks and state.min_room() < total:
            raise WouldBlock(
                f"a subscriber of {self.route} with overflow='block' has no room for {total}",
                route=str(self.route),
            )
        sinks = state.sinks
        if not sinks:
            self._unroutable(total)
            return
        for sink in sinks:
            sink.offer_many(msgs)
        self._sent += total

    async def send_many(self, msgs: Sequence[T]) -> None:
        """Send messages in order, as one batch per subscriber (the fast path).

        Every message is type-checked before any is sent.  With ``block`` subscribers the batch
        is delivered in chunks that fit, waiting in between.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._check_many(msgs)
        total = len(msgs)
        done = 0
        while done < total:
            chunk = total - done
            if state.blocking_sinks:
                room = state.min_room()
                if room <= 0:
                    full = state.first_full_sink()
                    if full is not None:
                        await full.wait_room()
                    state = self._check_many(msgs)
                    continue
                chunk = min(chunk, room)
            sinks = state.sinks
            if not sinks:
                self._unroutable(total - done)
                break
            part = msgs if chunk == total else msgs[done : done + chunk]
            for sink in sinks:
                sink.offer_many(part)
            self._sent += chunk
            done += chunk
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _check_many(self, msgs: Sequence[T]) -> RouteState:
        state = self._state
        if state is None:
            self._raise_closed()
        kinds = set(map(type, msgs))
        if kinds and kinds != {self._msg_type}:
            wrong = next(k for k in kinds if k is not self._msg_type)
            raise TypeMismatch(
                f"route {self.route} carries {self._msg_type.__qualname__}, "
                f"not {wrong.__qualname__}"
            )
        return state

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Unlink and unregister at once (idempotent).  Never blocks."""
        state = self._state
        if state is None:
            return
        self._state = None
        state.remove_intent(self)
        self.tracker.close()

    def _describe(self) -> str:
        return str(self.route)
