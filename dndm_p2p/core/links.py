"""What each handle knows about its links, level-triggered.

Every intent keeps the set of interests it is linked to, and every interest the set of intents
that feed it.  The set is the truth; events are derived from it.  ``wait`` returns at once when
the condition already holds (a late producer is never left waiting for a notification that was
sent before it existed), and the event iterator yields the *difference* between what it last
showed and the current set, so it needs no queue that could grow without bound or lose an edge:
a link that comes and goes between two reads is simply not shown, and the final state always is.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import trio

from dndm_p2p.core.qos import QoS
from dndm_p2p.core.route import Route
from dndm_p2p.errors import Closed

__all__ = ["LinkEvent", "LinkEventKind", "LinkEvents", "LinkInfo", "LinkTracker"]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """The far end of a link, as seen from one handle.

    ``handle_id`` identifies the far handle (unique per process); ``route`` is the route it
    declared (for a pattern interest, the concrete route it is linked on); ``peer`` is the
    libp2p peer id of a remote handle, ``None`` for a handle in this process; ``qos`` is the
    subscriber's QoS when the far end is an interest.
    """

    handle_id: int
    route: Route
    peer: str | None = None
    qos: QoS | None = None

    @property
    def is_local(self) -> bool:
        """True when the far handle lives in this process."""
        return self.peer is None


class LinkEventKind(enum.Enum):
    """Whether a link appeared or went away."""

    LINKED = "linked"
    UNLINKED = "unlinked"


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One change in a handle's set of links."""

    kind: LinkEventKind
    link: LinkInfo


class LinkTracker:
    """The current set of links of one handle, with a change signal.

    All mutation happens synchronously in the trio thread (the router calls ``add`` and
    ``remove`` while it rewires routes), so there is no lock: a reader never sees a half
    updated set.
    """

    __slots__ = ("_changed", "_closed", "_links", "_version")

    def __init__(self) -> None:
        self._links: dict[tuple[str, int, str], LinkInfo] = {}
        self._version = 0
        self._changed = trio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._links)

    def __bool__(self) -> bool:
        return bool(self._links)

    @property
    def version(self) -> int:
        """A counter bumped by every change."""
        return self._version

    @property
    def closed(self) -> bool:
        """True once the owning handle closed."""
        return self._closed

    def snapshot(self) -> frozenset[LinkInfo]:
        """The current links."""
        return frozenset(self._links.values())

    def add(self, info: LinkInfo) -> None:
        """Record a new link (idempotent)."""
        key = _key(info)
        if key not in self._links:
            self._links[key] = info
            self._bump()

    def remove(self, info: LinkInfo) -> None:
        """Forget a link (idempotent)."""
        if self._links.pop(_key(info), None) is not None:
            self._bump()

    def close(self) -> None:
        """Drop every link and wake every waiter; later waits raise :class:`Closed`."""
        self._links.clear()
        self._closed = True
        self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self, since: int) -> None:
        """Return once the version differs from ``since`` (at once if it already does)."""
        while self._version == since:
            if self._closed:
                raise Closed("handle is closed")
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_any(self) -> frozenset[LinkInfo]:
        """Return the current links as soon as there is at least one."""
        while not self._links:
            if self._closed:
                raise Closed("handle is closed")
            await self._changed.wait()
        await trio.lowlevel.checkpoint()
        return self.snapshot()

    async def wait_for(
        self, predicate: Callable[[frozenset[LinkInfo]], bool]
    ) -> frozenset[LinkInfo]:
        """Return the current links as soon as ``predicate`` holds for them (at once if it does).

        Raises :class:`Closed` if the handle closes first.
        """
        while True:
            current = self.snapshot()
            if predicate(current):
                await trio.lowlevel.checkpoint()
                return current
            if self._closed:
                raise Closed("handle is closed")
            await self._changed.wait()

    def events(self) -> LinkEvents:
        """An async iterator of link and unlink events (see :class:`LinkEvents`)."""
        return LinkEvents(self)


class LinkEvents(AsyncIterator[LinkEvent]):
    """Async iterator of :class:`LinkEvent`, starting with one LINKED per current link.

    It compares snapshots, so it holds no queue: it cannot leak or overflow.  Iteration ends when
    the handle closes.
    """

    __slots__ = ("_pending", "_seen", "_tracker", "_version")

    def __init__(self, tracker: LinkTracker) -> None:
        self._tracker = tracker
        self._seen: frozenset[LinkInfo] = frozenset()
        self._version = -1
        self._pending: list[LinkEvent] = []

    def __aiter__(self) -> LinkEvents:
        return self

    async def __anext__(self) -> LinkEvent:
        tracker = self._tracker
        while not self._pending:
            if tracker.closed:
                raise StopAsyncIteration
            if self._version == tracker.version:
                try:
                    await tracker.wait_change(self._version)
                except Closed:
                    raise StopAsyncIteration from None
                continue
            self._version = tracker.version
            current = tracker.snapshot()
            gone = sorted(self._seen - current, key=_order)
            new = sorted(current - self._seen, key=_order)
            self._seen = current
            self._pending.extend(LinkEvent(LinkEventKind.UNLINKED, info) for info in gone)
            self._pending.extend(LinkEvent(LinkEventKind.LINKED, info) for info in new)
        await trio.lowlevel.checkpoint()
        return self._pending.pop(0)


def _key(info: LinkInfo) -> tuple[str, int, str]:
    # Handle ids are unique per process only: the peer is part of a remote handle's identity.
    return (info.peer or "", info.handle_id, info.route.id)


_order = _key
