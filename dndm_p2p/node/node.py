"""The Node: DNDM over libp2p, linking intents and interests across processes and machines.

A node owns a libp2p host (Noise only, yamux, an Ed25519 identity), an in-process
:class:`~dndm_p2p.core.router.Router`, and one :class:`~dndm_p2p.node.session.PeerSession` per
connected
peer.  Applications use the same handles as in process::

    async with Node(NodeConfig(name="arm")) as node:
        async with node.publish("robot.arm.temp", Temperature) as temps:
            await temps.wait_interest()          # a subscriber here or on any linked peer
            await temps.send(Temperature(celsius=21.5))

Local and remote links look the same to the application: an intent's ``interests`` lists remote
subscribers with their peer id.  The node advertises every declaration to every peer, opens a
data link for every remote intent a local interest wants, reconnects to peers it had links with
(exponential backoff with jitter), and resumes reliable links where they stopped.

Everything runs in the node's nursery; leaving the ``async with`` block closes every handle,
session, stream and the host, and nothing is left running.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from google.protobuf.message import Message
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.qos import Overflow, QoS, SlowSubscriberMode
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.core.rpc import RpcEndpoints
from dndm_p2p.discovery.component import Discovery
from dndm_p2p.errors import (
    Closed,
    DndmError,
    ProtocolError,
    Unavailable,
)
from dndm_p2p.host.build import (
    HostConfig,
    listen_addrs,
    running_host,
    set_circuit_dialer,
)
from dndm_p2p.host.identity import generate_identity, load_or_create_identity
from dndm_p2p.node.addressbook import AddressBook
from dndm_p2p.node.admin import AdminServer
from dndm_p2p.node.advertiser import Advertiser
from dndm_p2p.node.components import AddressBookSaver, Component, Components
from dndm_p2p.node.events import EventHub
from dndm_p2p.node.link_registry import LinkRegistry
from dndm_p2p.node.moves import SessionMoves
from dndm_p2p.node.protection import protection_counters
from dndm_p2p.node.reconnect import Reconnector, peer_of
from dndm_p2p.node.resources import ResourceManager, ResourceSnapshot
from dndm_p2p.node.services import NodeServices
from dndm_p2p.node.session import PeerSession
from dndm_p2p.node.session_table import SessionTable
from dndm_p2p.node.slow_subscribers import SlowSubscriberStats
from dndm_p2p.node.snapshots import known_routes, link_stats, peer_infos
from dndm_p2p.node.types import KnownRoute, LinkStats, NodeEvent, PeerInfo
from dndm_p2p.node.violations import LimitEnforcer
from dndm_p2p.node.watcher import ConnectionWatcher
from dndm_p2p.nurseries import StackOwner, open_owned_nursery
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID
from protocols.libp2p_fixes.yamux import receive_windows

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.crypto.keys import KeyPair, PrivateKey
    from multiaddr import Multiaddr

    from nat import NatEvent, NatService

__all__ = ["HostFactory", "KnownRoute", "LinkStats", "Node", "NodeEvent", "PeerInfo"]

T = TypeVar("T", bound=Message)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

#: Builds the running host of a node from its key pair (see :class:`Node`).
HostFactory = Callable[["KeyPair"], AbstractAsyncContextManager["IHost"]]

_MAX_KEPT_ERRORS = 100
#: Seconds between saves of a changed address book.
_ADDRESS_BOOK_SAVE = 30.0


class Node(RpcEndpoints, StackOwner):
    """A DNDM node on libp2p (see the module docstring)."""

    def __init__(
        self, config: NodeConfig | None = None, *, host_factory: HostFactory | None = None
    ) -> None:
        """Create a node; it starts when entered with ``async with``.

        ``host_factory`` replaces the libp2p host the node runs on (the default listens on
        ``config.listen`` over TCP, and QUIC when asked): given the node's key pair, it returns an
        async context manager yielding a running host, closed on exit.  simnet uses it to run
        real nodes over an emulated network.
        """
        self.config = config or NodeConfig()
        self._host_factory = host_factory
        self.name = self.config.name
        self.router = Router(default_qos=self.config.default_qos, name=self.name)
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._events = EventHub()
        self.errors: deque[DndmError] = deque(maxlen=_MAX_KEPT_ERRORS)
        self.error_count = 0
        self._closing = False
        self._key_pair: KeyPair | None = None
        #: Drops peers over their resource limits or past a yamux receive window.
        self._enforcer = LimitEnforcer(
            resources=lambda: self.resource_manager,
            session_of=lambda peer: self._sessions.get(peer),
            emit=self._events.emit,
            report_error=self.report_error,
            disconnect=lambda peer_id: self.host.disconnect(peer_id),
            nursery=lambda: self._nursery,
        )
        #: What each peer, and all peers together, may make this node hold.
        self.resource_manager = ResourceManager(
            self.config.limits, drop_peer=self._enforcer.drop_over_limits
        )
        self._links = LinkRegistry(
            self.router,
            self.config,
            lambda: self._closing,
            self._events.emit,
            self.resource_manager,
        )
        self._reconnector = Reconnector(
            self.config,
            dial=lambda addr, keep: self._table.join(addr, keep=keep),
            connected=lambda peer: self.session(peer) is not None,
            known_addrs=lambda peer_id: [str(a) for a in self._known_addrs(peer_id)],
            closing=lambda: self._closing,
            report_error=lambda error, peer: self.report_error(error, peer=peer),
        )
        self._moves = SessionMoves(lambda peer_id: self.host.get_network().get_connections(peer_id))
        self._table: SessionTable[PeerSession] = SessionTable(
            self.config,
            new_session=lambda peer_id: PeerSession(self._services, peer_id),
            host=lambda: self.host,
            nursery=lambda: self._nursery,
            closing=lambda: self._closing,
            moves=self._moves,
            reconnector=self._reconnector,
            address_book=lambda: self.address_book,
            emit=self._events.emit,
            report_error=self.report_error,
        )
        self._sessions = self._table.sessions
        #: Connected libp2p peers that do not speak DNDM (no session is started with them).
        self.foreign_peers = self._table.foreign_peers
        self._advertiser = Advertiser(
            self.router,
            self._links,
            sessions=lambda: list(self._sessions.values()),
            discovery=lambda: self.discovery,
            closing=lambda: self._closing,
        )
        #: What the node's parts (sessions, discovery, the connection watcher) may ask of it.
        self._services = NodeServices(
            self.config,
            self.router,
            links=self._links,
            resources=self.resource_manager,
            reconnector=self._reconnector,
            report_error=self.report_error,
            advertised_addrs=self.advertised_addrs,
            dial=self._table.join,
            advert=self._advertiser.advert,
            moving=self._moves.is_moving,
            session_ended=self._table.session_ended,
            known_addrs=self._known_addrs,
            connection_opened=self._table.connection_opened,
            last_connection_closed=self._table.last_connection_closed,
            running_sessions=self._table.running,
            connected=lambda peer: self.session(peer) is not None,
            host=lambda: self.host,
            private_key=lambda: self.private_key,
            closing=lambda: self._closing,
            address_book=lambda: self.address_book,
            addrs_changed=lambda: self.nat.changed if self.nat is not None else None,
        )
        self._components = Components()
        #: Finds and dials peers with matching routes (when discovery is configured).
        self.discovery: Discovery | None = None
        #: Where the peers met are remembered across restarts (``config.address_book``).
        self.address_book: AddressBook | None = None
        #: Reachability, relays and hole punching (``config.nat``).
        self.nat: NatService | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, config: NodeConfig | None = None, *, host_factory: HostFactory | None = None
    ) -> Node:
        """The node for ``config``; use it as ``async with Node.open(config) as node``."""
        return cls(config, host_factory=host_factory)

    async def __aenter__(self) -> Node:
        if self._stack is not None or self._closing:
            raise Closed("a node can be started once")
        key_pair = (
            load_or_create_identity(self.config.key_file)
            if self.config.key_file is not None
            else generate_identity()
        )
        self._key_pair = key_pair
        config = self.config
        if config.address_book is not None:
            self.address_book = AddressBook.load(config.address_book)
            if self.address_book.problem:
                self._events.emit(NodeEvent("warning", None, self.address_book.problem))
        stack = AsyncExitStack()
        try:
            if self._host_factory is not None:
                host_context = self._host_factory(key_pair)
            else:
                host_config = HostConfig(
                    listen=self.config.listen,
                    quic=self.config.quic,
                    max_connections=self.config.max_connections,
                    max_peers=self.config.max_peers,
                    limits=self.config.connection_limits,
                )
                host_context = running_host(key_pair, host_config)
            self._host = await stack.enter_async_context(host_context)
            # The nursery sits inside the host: cancelling the node's tasks at shutdown must not
            # cancel the host's own orderly close (which would also hide the block's exception).
            self._nursery = await stack.enter_async_context(open_owned_nursery())
            stack.push_async_callback(self._shutdown)
            await stack.enter_async_context(self.router)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        # From here on the stack holds the host and the nursery: any failure must unwind it
        # (an ``__aenter__`` that raises gets no ``__aexit__``).
        try:
            host, nursery = self._host, self._nursery
            self._links.start(nursery)
            self._reconnector.start(nursery)
            host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), self._table.on_control_stream)
            host.set_stream_handler(TProtocol(DATA_PROTOCOL_ID), self._table.on_data_stream)
            host.get_network().register_notifee(ConnectionWatcher(self._services))
            windows = receive_windows(host)
            if windows is not None:
                windows.listeners.append(self._enforcer.on_window_violation)
            self.router.lowlevel.add_observer(self._advertiser)
            for addr in self.config.peers:
                self._reconnector.want(peer_of(addr), addr)
                self._reconnector.schedule(peer_of(addr), first_delay=0.0)
            await self._start_components()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _optional_components(self) -> list[Component]:
        """NAT traversal, the admin socket, the address book's saver and discovery, as
        configured, in the order they start."""
        config = self.config
        components: list[Component] = []
        if config.nat is not None:
            from nat import NatService

            self.nat = NatService(
                self.host, config.nat, bootstrap=config.bootstrap, on_event=self._on_nat_event
            )
            components.append(self.nat)
        if config.admin_socket is not None:
            components.append(
                AdminServer(self, config.admin_socket, on_error=self._report_admin_error)
            )
        if self.address_book is not None:
            components.append(
                AddressBookSaver(self.address_book, _ADDRESS_BOOK_SAVE, self.report_error)
            )
        if config.discovers:
            self.discovery = Discovery(self._services)
            components.append(self.discovery)
        return components

    async def _start_components(self) -> None:
        assert self._nursery is not None
        for component in self._optional_components():
            await self._components.start(self._nursery, component)
            if component is self.nat:
                # From now on, relayed addresses are dialled through the NAT component.
                set_circuit_dialer(self.host, self.nat.dial)

    def _on_exit(self) -> None:
        """Leaving the block closes every handle; then sessions, components and the host stop."""
        if self._stack is not None:
            self._closing = True
            self.router.close()

    async def _shutdown(self) -> None:
        """Close sessions and links before the host goes away (runs inside the nursery)."""
        self._closing = True
        self.router.close()
        if self._host is not None:
            set_circuit_dialer(self._host, None)
        self._links.close()
        self._reconnector.stop()
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close()
        # Sessions close their links in good order first; give them a moment.
        with trio.move_on_after(2.0):
            for session in sessions:
                await session.ended.wait()
        self._events.close()
        self._components.stop()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def host(self) -> IHost:
        """The libp2p host (only while the node runs)."""
        if self._host is None:
            raise Closed("the node is not running")
        return self._host

    @property
    def private_key(self) -> PrivateKey:
        """This node's libp2p private key (only while the node runs)."""
        if self._key_pair is None:
            raise Closed("the node is not running")
        return self._key_pair.private_key

    @property
    def peer_id(self) -> str:
        """This node's libp2p peer id."""
        return str(self.host.get_id())

    @property
    def addrs(self) -> list[str]:
        """Where peers can reach this node, as ``/…/p2p/<id>`` multiaddrs: the listen
        addresses, then (with NAT traversal) addresses through relays."""
        found = [str(a) for a in listen_addrs(self.host)]
        if self.nat is not None:
            found.extend(f"{a}/p2p/{self.peer_id}" for a in self.nat.relay.circuit_addrs())
        return found

    def advertised_addrs(self) -> list[Multiaddr]:
        """The addresses to publish for others (no ``/p2p/<id>``): with NAT traversal, public
        and confirmed ones, then relayed ones, then private ones; else the listen addresses."""
        if self.nat is not None:
            return self.nat.advertised_addrs()
        return list(self.host.get_transport_addrs())

    # -- declarations -----------------------------------------------------------------------------

    def publish(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        slow_subscriber: SlowSubscriberMode | str | None = None,
        evict_after: float | None = None,
        **options: Any,
    ) -> Intent[T]:
        """Declare an intent, here and at every peer (see :meth:`Router.publish`).

        No remote subscriber ever makes this intent's ``send()`` wait.  ``slow_subscriber``
        says what one that does not keep up gets: ``"drop"`` (messages dropped for it alone,
        counted and reported to it) or ``"evict"`` (dropped, and its link evicted once it has
        lagged for ``evict_after`` seconds, with a ``subscriber_evicted`` event); ``None``
        takes ``config.slow_subscriber`` and ``config.slow_subscriber_deadline``.  The route's
        policy applies to the links made from now on; the last intent declared on a route sets
        it.  Local subscribers keep their own QoS (``block`` included).
        """
        policy = self._links.make_policy(slow_subscriber, evict_after)
        intent = self.router.publish(route, msg_type, **options)
        self._links.set_policy(intent.route, policy)
        return intent

    @property
    def incarnation(self) -> int:
        """This node's incarnation: a random 64-bit id drawn when the node was created, sent
        in every hello, so that peers tell its restart from its reconnection."""
        return self._links.incarnation

    @property
    def slow_subscribers(self) -> SlowSubscriberStats:
        """A snapshot of the counters of remote subscribers that did not keep up."""
        return self._links.slow_subscriber_stats()

    def subscribe(self, route: str | Route, msg_type: type[T], **options: Any) -> Interest[T]:
        """Declare an interest, here and at every peer (see :meth:`Router.subscribe`).

        ``reliable=True`` asks remote publishers for acknowledged, resumable delivery, with the
        ``block`` overflow policy so that nothing is dropped on the way.
        """
        if options.pop("reliable", False):
            base = options.pop("qos", None) or self.config.default_qos
            options["qos"] = QoS(
                options.pop("depth", None) or base.depth,
                options.pop("overflow", None) or Overflow.BLOCK,
                True,
            )
        return self.router.subscribe(route, msg_type, **options)

    # -- peers ------------------------------------------------------------------------------------

    async def connect(self, addr: str, *, keep: bool = True) -> str:
        """Connect to a DNDM peer (``/ip4/…/tcp/…/p2p/<id>``) and wait for its hello.

        With ``keep`` the node reconnects to it whenever the connection drops.  Raises
        :class:`Unavailable` when it cannot be reached, and as soon as it turns out not to be
        a DNDM node (its libp2p connection is kept then, for the protocols we share).
        """
        peer = await self._table.join(addr, keep=keep)
        if peer in self.foreign_peers:
            raise Unavailable(
                f"{peer} is not a DNDM node (it does not speak {CONTROL_PROTOCOL_ID})", peer=peer
            )
        return peer

    def peers(self) -> list[PeerInfo]:
        """The peers with a running session."""
        return peer_infos(self._running_sessions(), lambda s: self._known_addrs(s.peer_id))

    def known_routes(self) -> list[KnownRoute]:
        """Every intent and interest known here: local ones, those of connected peers, and
        those discovery learnt of."""
        discovered = self.discovery.discovered() if self.discovery is not None else []
        return known_routes(self.router, self._running_sessions(), discovered)

    def links(self) -> list[LinkStats]:
        """Every remote link of every running session, both directions."""
        return link_stats(self._sessions.values())

    def resources(self) -> ResourceSnapshot:
        """What the peers make this node hold now, and the refusals and drops so far."""
        return self.resource_manager.snapshot()

    def counters(self) -> dict[str, int]:
        """The node's protection counters, by name: every refusal, trim and limit hit (see
        :func:`~dndm_p2p.node.protection.protection_counters` for the names)."""
        discovery = self.discovery
        return protection_counters(
            self._host,
            errors=self.error_count,
            dropped_streams=self.dropped_streams,
            rate_limited=self._table.rate_limited(),
            discovery=discovery.counters() if discovery is not None else None,
        )

    @property
    def dropped_streams(self) -> int:
        """Data streams refused: over the peer's limits, or over its link count."""
        return self._table.dropped_streams

    def session(self, peer: str) -> PeerSession | None:
        """The running session with ``peer``, if any."""
        return self._table.session(peer)

    @asynccontextmanager
    async def events(
        self, buffer: int = 256
    ) -> AsyncIterator[trio.MemoryReceiveChannel[NodeEvent]]:
        """Receive the node's events (peers connected and lost, errors) while in the block.

        A consumer that falls more than ``buffer`` events behind misses the newest ones.
        """
        async with self._events.subscribe(buffer) as receive:
            yield receive

    def report_error(self, error: DndmError, *, peer: str | None = None) -> None:
        """Record an error of background work and deliver it as an event."""
        self.errors.append(error)
        self.error_count += 1
        self._events.emit(NodeEvent("error", peer, str(error), error))

    def _report_admin_error(self, error: BaseException) -> None:
        if not isinstance(error, DndmError):
            error = ProtocolError(f"admin socket: {error!r}")
        self.report_error(error)

    def _on_nat_event(self, event: NatEvent) -> None:
        self._events.emit(NodeEvent(event.kind, event.peer, event.detail))

    def _running_sessions(self) -> list[PeerSession]:
        return self._table.running()

    def _known_addrs(self, peer_id: ID) -> list[Multiaddr]:
        """The peerstore's addresses of ``peer_id`` (none when it has no record of the peer:
        py-libp2p raises there, and evicts peers beyond its capacity)."""
        try:
            return list(self.host.get_peerstore().addrs(peer_id))
        except PeerStoreError:
            return []
