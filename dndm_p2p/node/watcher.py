"""The connection watcher: the node learns of libp2p connections coming and going.

py-libp2p tells a network's notifees of every connection opened and closed; the watcher passes
on a connection opened, and the close of a peer's *last* connection (while any connection to a
peer remains, its session goes on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from libp2p.abc import INotifee

if TYPE_CHECKING:
    from libp2p.abc import INetConn, INetStream, INetwork
    from libp2p.peer.id import ID

__all__ = ["ConnectionListener", "ConnectionWatcher"]


class ConnectionListener(Protocol):
    """What the watcher tells."""

    def connection_opened(self, conn: INetConn) -> None:
        """A connection to a peer opened."""
        ...

    def last_connection_closed(self, peer_id: ID) -> None:
        """No connection to ``peer_id`` is left."""
        ...


class ConnectionWatcher(INotifee):
    """A py-libp2p network notifee telling a :class:`ConnectionListener`."""

    def __init__(self, listener: ConnectionListener) -> None:
        self._listener = listener

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """Tell of the new connection."""
        self._listener.connection_opened(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """Tell when no connection to the peer is left."""
        peer_id = conn.muxed_conn.peer_id
        if not network.get_connections(peer_id):
            self._listener.last_connection_closed(peer_id)

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""
