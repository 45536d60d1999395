"""Dropping peers that break the node's limits: the resource manager's drops, and yamux
receive-window violations.

A :class:`LimitEnforcer` is told of both.  A peer that kept exceeding its resource limits gets a
``peer_dropped`` event and its session dropped (the session tells the peer why).  A peer that
sent past a stream's receive window broke the muxer's protocol: the refusal is counted in the
resource manager and, once per connection, reported, the peer dropped as above, and its
connection closed; after that close (or five seconds) the peer may be reported again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio

from dndm_p2p.errors import ResourceLimitExceeded, Unavailable
from dndm_p2p.node.resources import ResourceManager
from dndm_p2p.node.types import NodeEvent

if TYPE_CHECKING:
    from libp2p.peer.id import ID

__all__ = ["DroppableSession", "LimitEnforcer"]

#: Seconds the violator's connection is given to close.
_DISCONNECT_TIMEOUT = 5


class DroppableSession(Protocol):
    """A peer's session, as far as dropping it goes."""

    def drop(self, error: ResourceLimitExceeded) -> None:
        """End the session because the peer exceeded its limits (telling it why)."""


class LimitEnforcer:
    """Drops peers over their limits (see the module docstring)."""

    def __init__(
        self,
        *,
        resources: Callable[[], ResourceManager],
        session_of: Callable[[str], DroppableSession | None],
        emit: Callable[[NodeEvent], None],
        report_error: Callable[..., None],
        disconnect: Callable[[ID], Awaitable[None]],
        nursery: Callable[[], trio.Nursery | None],
    ) -> None:
        """``resources`` gives the node's resource manager, ``session_of`` a peer's session
        (if any), ``disconnect`` closes a peer's connections, ``nursery`` the node's nursery
        (None when it does not run)."""
        self._resources = resources
        self._session_of = session_of
        self._emit = emit
        self._report_error = report_error
        self._disconnect = disconnect
        self._nursery = nursery
        #: Peers reported for a receive-window violation whose connection is being closed.
        self._window_violators: set[str] = set()

    def drop_over_limits(self, peer: str, error: ResourceLimitExceeded) -> None:
        """A peer kept exceeding its limits: end its session (its connection follows)."""
        self._emit(NodeEvent("peer_dropped", peer, str(error), error))
        session = self._session_of(peer)
        if session is not None:
            session.drop(error)

    def on_window_violation(self, peer_id: ID, size: int) -> None:
        """A peer sent past a stream's receive window: it broke the muxer's protocol, and
        the node drops it at once (the frame was already refused)."""
        peer = str(peer_id)
        error = ResourceLimitExceeded(
            f"{peer} sent a {size}-byte yamux frame past the stream's receive window",
            resource="memory",
            use="receive_window",
            scope="peer",
            size=size,
            limit=0,
            peer=peer,
        )
        self._resources().count_refusal(error)
        if peer not in self._window_violators:
            self._window_violators.add(peer)
            self._report_error(error, peer=peer)
            self.drop_over_limits(peer, error)
            nursery = self._nursery()
            if nursery is not None:
                nursery.start_soon(self._forget_violator, peer_id)

    async def _forget_violator(self, peer_id: ID) -> None:
        """Close the violator's connection; once closed it may be reported again."""
        with trio.move_on_after(_DISCONNECT_TIMEOUT):
            try:
                await self._disconnect(peer_id)
            except Exception as exc:  # py-libp2p raises assorted errors for a closing connection
                self._report_error(Unavailable(f"closing the connection to {peer_id}: {exc}"))
        self._window_violators.discard(str(peer_id))
