"""Connection helpers shared by the NAT parts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.addrs import is_circuit

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn
    from libp2p.peer.id import ID

__all__ = ["connected_peers", "has_direct", "is_relayed"]


def is_relayed(conn: INetConn) -> bool:
    """True for a connection through a relay."""
    try:
        return any(is_circuit(a) for a in conn.get_transport_addresses())
    except Exception:
        return False


def connected_peers(host: IHost) -> list[ID]:
    """Every peer ``host`` has a connection to, each once."""
    found: dict[ID, None] = {}
    for conn in host.get_network().get_connections():
        found.setdefault(conn.muxed_conn.peer_id, None)
    return list(found)


def has_direct(host: IHost, peer_id: ID) -> bool:
    """True when ``host`` has a connection to ``peer_id`` that is not relayed."""
    return any(not is_relayed(c) for c in host.get_network().get_connections(peer_id))
