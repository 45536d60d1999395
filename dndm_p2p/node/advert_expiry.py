"""When a peer's session adverts expire: the ``ttl_ms`` of ``Advert`` on a control session.

An advert with ``ttl_ms > 0`` lives that long after reception unless a later register of the
same handle refreshes it (``ttl_ms = 0``: until unregistered or disconnected); see
``docs/wire-protocol.md``.  :class:`AdvertExpiry` keeps the deadlines of one session's adverts
and, in one task, hands the expired ones to its owner, which forgets them as an unregister
would.  A peer chooses its TTLs, but never one longer than ``max_ttl``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable

import trio

__all__ = ["AdvertExpiry"]


class AdvertExpiry:
    """Deadlines of adverts, by key; :meth:`run` reports each one once when it passes.

    Invariants: a key has at most one live deadline (the latest :meth:`refresh` sets it);
    :meth:`forget` and a refresh without TTL cancel it; the memory kept is proportional to the
    number of keys with a deadline, however often they are refreshed.
    """

    __slots__ = ("_deadlines", "_heap", "_on_expired", "_wake", "capped", "max_ttl")

    def __init__(self, max_ttl: float, on_expired: Callable[[list[Hashable]], None]) -> None:
        """Cap every TTL at ``max_ttl`` seconds; report expired keys to ``on_expired``."""
        self.max_ttl = max_ttl
        #: How many TTLs were longer than ``max_ttl`` and cut to it.
        self.capped = 0
        self._on_expired = on_expired
        self._deadlines: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._wake = trio.Event()

    def __len__(self) -> int:
        """The number of adverts with a deadline."""
        return len(self._deadlines)

    def deadline(self, key: Hashable) -> float | None:
        """When ``key`` expires (trio time), or None if it has no deadline."""
        return self._deadlines.get(key)

    def refresh(self, key: Hashable, ttl_ms: int) -> None:
        """(Re)start ``key``'s lifetime: ``ttl_ms`` from now, at most ``max_ttl``; 0: none."""
        if ttl_ms <= 0:
            self._deadlines.pop(key, None)
            return
        ttl = ttl_ms / 1000
        if ttl > self.max_ttl:
            ttl = self.max_ttl
            self.capped += 1
        deadline = trio.current_time() + ttl
        self._deadlines[key] = deadline
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (deadline, id(key), key))
        if len(self._heap) > 2 * len(self._deadlines) + 64:
            self._compact()
        if deadline < earliest:
            self._wake.set()

    def forget(self, key: Hashable) -> None:
        """Cancel ``key``'s deadline (it was unregistered)."""
        self._deadlines.pop(key, None)

    def clear(self) -> None:
        """Cancel every deadline."""
        self._deadlines.clear()
        self._heap.clear()

    async def run(self) -> None:
        """Report expired keys as their deadlines pass, until cancelled."""
        while True:
            self._wake = trio.Event()
            expired = self._pop_expired(trio.current_time())
            if expired:
                self._on_expired(expired)
            next_deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(next_deadline):
                await self._wake.wait()

    def _pop_expired(self, now: float) -> list[Hashable]:
        expired: list[Hashable] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                expired.append(key)
        return expired

    def _compact(self) -> None:
        """Drop heap entries of refreshed or forgotten keys."""
        self._heap = [(when, id(key), key) for key, when in self._deadlines.items()]
        heapq.heapify(self._heap)
