"""Blocking handles: :class:`Intent` and :class:`Interest` over the trio handles of the core.

Each wraps one trio handle (``.trio``) that lives in a
:class:`~dndm_p2p.sync.portal.TrioThread`; every method may be called from any thread (the
trio handle is touched only in its thread).  ``with`` closes a handle; an :class:`Interest`
is a plain iterator of messages, ended when it closes.  A receive fetches every queued message
in one crossing and hands them out one by one, so a busy consumer crosses threads once per
batch, not once per message.  Errors are the core's own exception classes; a ``timeout``
(seconds) raises :class:`~dndm_p2p.errors.Timeout`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Generic, Self, TypeVar

from google.protobuf.message import Message

from dndm_p2p.core.intent import Intent as TrioIntent
from dndm_p2p.core.intent import IntentStats
from dndm_p2p.core.interest import Interest as TrioInterest
from dndm_p2p.core.interest import InterestStats
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.errors import Closed
from dndm_p2p.sync.portal import TrioThread

__all__ = ["Intent", "Interest"]

T = TypeVar("T", bound=Message)


class Intent(Generic[T]):
    """An intent to publish ``T`` messages, for threaded code (see :class:`dndm_p2p.Intent`)."""

    def __init__(self, thread: TrioThread, handle: TrioIntent[T]) -> None:
        self._thread = thread
        #: The trio handle this one drives (use it only in the trio thread).
        self.trio = handle

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self.trio.closed

    @property
    def interests(self) -> frozenset[LinkInfo]:
        """The interests linked right now."""
        return self._thread.run_sync(lambda: self.trio.interests)

    @property
    def stats(self) -> IntentStats:
        """The trio intent's counters."""
        return self._thread.run_sync(lambda: self.trio.stats)

    def wait_interest(self, timeout: float | None = None) -> frozenset[LinkInfo]:
        """Block until an interest is linked (at once if one is)."""
        return self._thread.run(self.trio.wait_interest, timeout=timeout)

    def send(self, msg: T, timeout: float | None = None) -> None:
        """Send one message; blocks only while a ``block`` subscriber is full."""
        self._thread.run(self.trio.send, msg, timeout=timeout)

    def send_many(self, msgs: Sequence[T], timeout: float | None = None) -> None:
        """Send a batch in order, as one batch per subscriber (the fast path)."""
        self._thread.run(self.trio.send_many, msgs, timeout=timeout)

    def close(self) -> None:
        """Unlink (idempotent)."""
        if self._thread.running:
            self._thread.run_sync(self.trio.close)

    def __enter__(self) -> Self:
        if self.closed:
            raise Closed(f"intent on {self.trio.route} is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Interest(Generic[T]):
    """An interest in ``T`` messages, for threaded code (see :class:`dndm_p2p.Interest`)."""

    def __init__(self, thread: TrioThread, handle: TrioInterest[T]) -> None:
        self._thread = thread
        #: The trio handle this one drives (use it only in the trio thread).
        self.trio = handle
        self._buffer: deque[T] = deque()
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """True once closed (messages already fetched may still be received)."""
        return self.trio.closed and not self._buffer

    @property
    def stats(self) -> InterestStats:
        """The trio interest's counters (``received`` counts messages fetched)."""
        return self._thread.run_sync(lambda: self.trio.stats)

    @property
    def error(self) -> BaseException | None:
        """The error that closed this interest (a failing callback), if any."""
        return self.trio.error

    def wait_intent(self, timeout: float | None = None) -> frozenset[LinkInfo]:
        """Block until an intent is linked (at once if one is)."""
        return self._thread.run(self.trio.wait_intent, timeout=timeout)

    def receive(self, timeout: float | None = None) -> T:
        """The next message, waiting up to ``timeout`` seconds (forever with ``None``).

        Raises :class:`Timeout` when none came, :class:`Closed` once closed and drained.
        """
        with self._lock:
            if not self._buffer:
                self._buffer.extend(self._thread.run(self.trio.receive_batch, timeout=timeout))
            return self._buffer.popleft()

    def receive_batch(self, max_n: int = 1024, timeout: float | None = None) -> list[T]:
        """At least one and up to ``max_n`` messages, oldest first."""
        with self._lock:
            if self._buffer:
                count = min(max_n, len(self._buffer))
                return [self._buffer.popleft() for _ in range(count)]
            return self._thread.run(self.trio.receive_batch, max_n, timeout=timeout)

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.receive()
            except Closed:
                if self.trio.error is not None:
                    raise
                return

    def close(self) -> None:
        """Unlink (idempotent); queued and fetched messages are discarded."""
        self._buffer.clear()
        if self._thread.running:
            self._thread.run_sync(self.trio.close)

    def __enter__(self) -> Self:
        if self.trio.closed:
            if self.trio.error is not None:
                raise self.trio.error
            raise Closed(f"interest in {self.trio.link.route} is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; when the block raised nothing, raise the error that closed it (if any)."""
        self.close()
        if exc is None and self.trio.error is not None:
            raise self.trio.error
