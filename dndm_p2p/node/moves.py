"""A peer's session moving from a relayed connection to a direct one (NAT traversal).

A hole punch adds a direct connection next to the relayed one, and the NAT component then
closes the relayed one.  The session on it ends (its streams go with the connection), and a new
one starts on the direct connection at once: reliable links resume where they stopped, exactly
as after a reconnection, but the direct connection is never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from dndm_p2p.node.session import PeerSession

if TYPE_CHECKING:
    from libp2p.abc import IMuxedConn, INetConn, INetStream
    from libp2p.peer.id import ID

__all__ = ["SessionMoves", "is_relayed"]


class SessionMoves:
    """The peers whose session is moving: the session that ran on the relayed connection, and
    that connection's muxer.  ``connections_of(peer_id)`` lists a peer's open connections."""

    def __init__(self, connections_of: Callable[[ID], list[INetConn]]) -> None:
        self._connections_of = connections_of
        self._moving: dict[str, tuple[PeerSession, IMuxedConn]] = {}

    def note_connection(self, conn: INetConn, session: PeerSession | None) -> None:
        """``conn`` opened: when it is direct and the peer's running ``session`` is on a
        relayed connection, mark the move."""
        if session is None or is_relayed(conn) or session.peer in self._moving:
            return
        for other in self._connections_of(session.peer_id):
            if other is not conn and is_relayed(other):
                self._moving[session.peer] = (session, other.muxed_conn)
                return

    def is_moving(self, session: PeerSession) -> bool:
        """True while ``session``'s relayed connection is giving way to a direct one."""
        moving = self._moving.get(session.peer)
        return moving is not None and moving[0] is session

    def finish(self, session: PeerSession) -> bool:
        """``session`` ended: True when it ended because its relayed connection gave way to a
        direct one that is still open (a new session is then to start on it)."""
        moving = self._moving.get(session.peer)
        if moving is None or moving[0] is not session:
            return False
        del self._moving[session.peer]
        return any(
            conn.muxed_conn is not moving[1] and not is_relayed(conn)
            for conn in self._connections_of(session.peer_id)
        )

    def forget(self, peer: str) -> None:
        """The last connection to ``peer`` closed."""
        self._moving.pop(peer, None)

    async def retire_old_session(self, stream: INetStream) -> None:
        """A stream on the new connection of a moving peer: end the old session first (its
        connection is going), so that the stream is served by a new session."""
        moving = self._moving.get(str(stream.muxed_conn.peer_id))
        if moving is None or stream.muxed_conn is moving[1]:
            return
        old = moving[0]
        if old.running:
            old.abort()
        with trio.move_on_after(2.0):
            await old.ended.wait()


def is_relayed(conn: INetConn) -> bool:
    """True for a connection through a relay (NAT traversal)."""
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:
        return False
