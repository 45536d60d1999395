"""What the node's parts may ask of the node.

:class:`NodeServices` is the one object the node hands to each peer session (as a
:class:`~dndm_p2p.node.session.SessionHost`), to discovery (as a
:class:`~dndm_p2p.discovery.component.DiscoveryContext`) and to the connection watcher (as a
:class:`~dndm_p2p.node.watcher.ConnectionListener`).  It holds no state of its own: every
property reads the node's current state through the callables it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.core.router import Router
from dndm_p2p.node.addressbook import AddressBook
from dndm_p2p.node.link_registry import LinkRegistry
from dndm_p2p.node.reconnect import Reconnector
from dndm_p2p.node.resources import ResourceManager

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn
    from libp2p.crypto.keys import PrivateKey
    from libp2p.peer.id import ID
    from multiaddr import Multiaddr

__all__ = ["AdvertisingSession", "NodeServices"]


class AdvertisingSession(Protocol):
    """A running peer session, as far as its peer's adverts go."""

    remote_intents: dict[int, RemoteAdvert]
    remote_interests: dict[int, RemoteAdvert]


class NodeServices:
    """What the node's parts may ask of it (see the module docstring)."""

    def __init__(
        self,
        config: NodeConfig,
        router: Router,
        *,
        links: LinkRegistry,
        resources: ResourceManager,
        reconnector: Reconnector,
        report_error: Callable[..., None],
        advertised_addrs: Callable[[], list[Multiaddr]],
        dial: Callable[..., Coroutine[Any, Any, str]],
        advert: Callable[..., Any],
        moving: Callable[[Any], bool],
        session_ended: Callable[[Any], None],
        known_addrs: Callable[[ID], list[Multiaddr]],
        connection_opened: Callable[[INetConn], None],
        last_connection_closed: Callable[[ID], None],
        running_sessions: Callable[[], Iterable[AdvertisingSession]],
        connected: Callable[[str], bool],
        host: Callable[[], IHost],
        private_key: Callable[[], PrivateKey],
        closing: Callable[[], bool],
        address_book: Callable[[], AddressBook | None],
        addrs_changed: Callable[[], trio.Event | None],
    ) -> None:
        self.config = config
        self.name = config.name
        self.router = router
        self.report_error = report_error
        self.advertised_addrs = advertised_addrs
        self.dial = dial
        self.capabilities = links.capabilities
        self.inbound_link = links.inbound_link
        self.outbound_link = links.outbound_link
        self.link_stream_ended = links.link_stream_ended
        self.peer_hello = links.peer_hello
        self.resources = resources
        self.advert = advert
        self.moving = moving
        self.session_ended = session_ended
        self.known_addrs = known_addrs
        self.connection_opened = connection_opened
        self.last_connection_closed = last_connection_closed
        self.connected = connected
        self._links = links
        self._reconnector = reconnector
        self._running_sessions = running_sessions
        self._host = host
        self._private_key = private_key
        self._closing = closing
        self._address_book = address_book
        self._addrs_changed = addrs_changed

    @property
    def host(self) -> IHost:
        """The node's libp2p host (only while the node runs)."""
        return self._host()

    @property
    def private_key(self) -> PrivateKey:
        """The node's private key (only while the node runs)."""
        return self._private_key()

    @property
    def peer_id(self) -> str:
        """The node's libp2p peer id."""
        return str(self._host().get_id())

    @property
    def closing(self) -> bool:
        """True once the node is closing."""
        return self._closing()

    @property
    def incarnation(self) -> int:
        """The node's incarnation (see :attr:`dndm_p2p.node.Node.incarnation`)."""
        return self._links.incarnation

    @property
    def wanted_peers(self) -> frozenset[str]:
        """The peers the node keeps connected to."""
        return self._reconnector.wanted_peers

    @property
    def address_book(self) -> AddressBook | None:
        """The node's address book, if it keeps one."""
        return self._address_book()

    @property
    def addrs_changed(self) -> trio.Event | None:
        """Set when the node's advertised addresses change (with NAT traversal), else None."""
        return self._addrs_changed()

    def peer_adverts(self) -> Iterator[RemoteAdvert]:
        """Every advert of every running session's peer."""
        for session in self._running_sessions():
            yield from session.remote_intents.values()
            yield from session.remote_interests.values()
