"""What a node has heard over GossipSub: received adverts, kept until withdrawn or expired.

:class:`AdvertTable` keeps one entry per ``(peer, handle_id)``.  GossipSub delivers in no
particular order and may deliver twice, so each Announcement's ``sequence`` (strictly increasing
per advertiser, across restarts) decides: an advert applies only if its Announcement is newer
than the one that last set that entry, else it is ignored.  A register adds or refreshes the
entry for its TTL; an unregister removes it and leaves a tombstone (for ``default_ttl``), so an
older register that arrives late cannot bring it back.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio

from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.discovery.gossip import Announcement
from protocols.validation import check_count, check_seconds

__all__ = ["AdvertChange", "AdvertTable", "KnownAdvert"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KnownAdvert:
    """One advert heard from a peer, as the table keeps it."""

    peer: str
    addrs: tuple[str, ...]
    namespace: str
    advert: RemoteAdvert
    #: The sequence of the Announcement that last set this entry.
    sequence: int
    #: When the entry expires unless refreshed (on the table's clock).
    expires_at: float


@dataclass(frozen=True, slots=True)
class AdvertChange:
    """A change :meth:`AdvertTable.apply` or :meth:`AdvertTable.expire` made.

    ``kind`` is ``"added"`` (a new entry), ``"updated"`` (an entry whose advert or addresses
    changed), ``"removed"`` (withdrawn by its peer) or ``"expired"`` (not refreshed in time).
    A refresh that changes nothing is not reported.
    """

    kind: Literal["added", "updated", "removed", "expired"]
    entry: KnownAdvert


_Key = tuple[str, int]


class AdvertTable:
    """Received adverts keyed by ``(peer, handle_id)``, with expiry; see the module doc.

    :param default_ttl: seconds an advert with no TTL (``ttl_ms`` 0) lives, and how long a
        tombstone is kept.
    :param max_ttl: the longest TTL honoured, in seconds; longer ones are cut to it.
    :param max_entries: most entries kept; further new ones are refused (counted in
        :attr:`refused`).
    :param clock: the time source (seconds); trio's clock by default.
    """

    def __init__(
        self,
        *,
        default_ttl: float = 60.0,
        max_ttl: float = 600.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        check_seconds(self, "default_ttl", above=0)
        check_seconds(self, "max_ttl", at_least=default_ttl)
        check_count(self, "max_entries", at_least=1)
        self.default_ttl = float(default_ttl)
        self.max_ttl = float(max_ttl)
        self._clock = clock
        self._entries: dict[_Key, KnownAdvert] = {}
        #: Withdrawn keys: (sequence of the unregister, when the tombstone goes).
        self._tombstones: dict[_Key, tuple[int, float]] = {}
        #: (expiry, key) for entries and tombstones; stale items are skipped when popped.
        self._deadlines: list[tuple[float, _Key]] = []
        #: New entries refused because the table was full.
        self.refused = 0

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[KnownAdvert]:
        """Every entry, expired or not (call :meth:`expire` first to drop expired ones)."""
        return list(self._entries.values())

    def get(self, peer: str, handle_id: int) -> KnownAdvert | None:
        """The entry of ``peer``'s handle ``handle_id``, if there is one."""
        return self._entries.get((peer, handle_id))

    def next_expiry(self) -> float | None:
        """The earliest time at which :meth:`expire` may have something to do."""
        return self._deadlines[0][0] if self._deadlines else None

    def apply(self, announcement: Announcement) -> list[AdvertChange]:
        """Apply ``announcement``'s adverts in order; return what changed."""
        now = self._clock()
        changes: list[AdvertChange] = []
        for advert in announcement.adverts:
            key = (announcement.peer, advert.handle_id)
            if announcement.sequence <= self._last_sequence(key):
                continue  # older than (or the same as) what set this entry
            if advert.register:
                change = self._register(key, announcement, advert, now)
            else:
                change = self._unregister(key, announcement.sequence, now)
            if change is not None:
                changes.append(change)
        return changes

    def expire(self) -> list[AdvertChange]:
        """Drop the entries and tombstones whose time has come; return the expired entries."""
        now = self._clock()
        changes: list[AdvertChange] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at == deadline:
                del self._entries[key]
                changes.append(AdvertChange("expired", entry))
            tombstone = self._tombstones.get(key)
            if tombstone is not None and tombstone[1] == deadline:
                del self._tombstones[key]
        return changes

    def forget_peer(self, peer: str) -> list[AdvertChange]:
        """Drop every entry and tombstone of ``peer``; return its entries as removed."""
        changes = [
            AdvertChange("removed", entry) for entry in self._entries.values() if entry.peer == peer
        ]
        for change in changes:
            del self._entries[(peer, change.entry.advert.handle_id)]
        for key in [key for key in self._tombstones if key[0] == peer]:
            del self._tombstones[key]
        return changes

    def _last_sequence(self, key: _Key) -> int:
        entry = self._entries.get(key)
        if entry is not None:
            return entry.sequence
        tombstone = self._tombstones.get(key)
        return tombstone[0] if tombstone is not None else -1

    def _register(
        self, key: _Key, announcement: Announcement, advert: RemoteAdvert, now: float
    ) -> AdvertChange | None:
        ttl = min(advert.ttl_ms / 1000, self.max_ttl) if advert.ttl_ms else self.default_ttl
        entry = KnownAdvert(
            peer=announcement.peer,
            addrs=announcement.addrs,
            namespace=announcement.namespace,
            advert=advert,
            sequence=announcement.sequence,
            expires_at=now + ttl,
        )
        old = self._entries.get(key)
        if old is None and len(self._entries) >= self.max_entries:
            self.refused += 1
            logger.warning("advert table full (%d entries): an advert is ignored", len(self))
            return None
        self._tombstones.pop(key, None)
        self._entries[key] = entry
        heapq.heappush(self._deadlines, (entry.expires_at, key))
        if old is None:
            return AdvertChange("added", entry)
        if old.addrs != entry.addrs or _essence(old.advert) != _essence(advert):
            return AdvertChange("updated", entry)
        return None

    def _unregister(self, key: _Key, sequence: int, now: float) -> AdvertChange | None:
        old = self._entries.pop(key, None)
        until = now + self.default_ttl
        self._tombstones[key] = (sequence, until)
        heapq.heappush(self._deadlines, (until, key))
        return AdvertChange("removed", old) if old is not None else None


def _essence(advert: RemoteAdvert) -> RemoteAdvert:
    """The advert without what a refresh may change (its sequence and TTL)."""
    return dataclasses.replace(advert, sequence=0, ttl_ms=0)
