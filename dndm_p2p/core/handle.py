"""What an intent and an interest have in common: an id, a link, a link tracker, a lifetime.

A handle is a :class:`trio.abc.AsyncResource`: ``async with handle:`` enters only if it is open
and leaves through :meth:`Handle.aclose`.  Closing is synchronous and idempotent
(:meth:`Handle.close`); the async form adds a checkpoint.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Callable
from typing import NoReturn, Self

import trio

from dndm_p2p.core.links import LinkEvents, LinkInfo, LinkTracker
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.route import Route

__all__ = ["Handle", "next_handle_id"]

_handle_ids = itertools.count(1)


def next_handle_id() -> int:
    """A process-unique id for a new handle."""
    return next(_handle_ids)


class Handle(trio.abc.AsyncResource):
    """The shared part of :class:`~dndm_p2p.core.intent.Intent` and
    :class:`~dndm_p2p.core.interest.Interest`.

    ``handle_id`` is unique in the process, ``link`` is what the handles at the other end of
    this one's links see of it, and ``tracker`` holds those links.
    """

    __slots__ = ("handle_id", "link", "tracker")

    handle_id: int
    link: LinkInfo
    tracker: LinkTracker

    def __init__(self, route: Route, peer: str | None, qos: QoS | None = None) -> None:
        self.handle_id = next_handle_id()
        self.link = LinkInfo(self.handle_id, route, peer, qos)
        self.tracker = LinkTracker()

    # -- what each kind of handle defines --------------------------------------------------------

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once the handle (or its router) closed."""

    @abstractmethod
    def close(self) -> None:
        """Unlink and unregister at once (idempotent).  Never blocks."""

    @abstractmethod
    def _raise_closed(self) -> NoReturn:
        """Raise the error that says why this handle is closed."""

    @abstractmethod
    def _describe(self) -> str:
        """What the handle is declared on, for ``repr``."""

    # -- links -------------------------------------------------------------------------------------

    async def _wait_any_link(self) -> frozenset[LinkInfo]:
        if self.closed:
            self._raise_closed()
        return await self.tracker.wait_any()

    async def wait_links(
        self, predicate: Callable[[frozenset[LinkInfo]], bool]
    ) -> frozenset[LinkInfo]:
        """Wait until the set of linked handles satisfies ``predicate``, and return it.

        Level-triggered: returns at once when it already does.  For example
        ``await handle.wait_links(lambda links: len(links) >= 3)`` or
        ``await handle.wait_links(lambda links: not links)``.
        """
        return await self.tracker.wait_for(predicate)

    def links(self) -> LinkEvents:
        """Async iterator of link/unlink events, starting with the current links."""
        return self.tracker.events()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Async form of :meth:`close`: closes, then checkpoints."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        if self.closed:
            self._raise_closed()
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.tracker)} linked"
        return f"<{type(self).__name__} {self._describe()} #{self.handle_id} {state}>"
