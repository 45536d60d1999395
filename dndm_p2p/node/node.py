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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from google.protobuf.message import Message
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.qos import Overflow, QoS, SlowSubscriberMode
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.core.rpc import Caller, Handler, RpcConfig, Service
from dndm_p2p.discovery.component import Discovery
from dndm_p2p.errors import (
    Closed,
    ConnectionLost,
    DndmError,
    ProtocolError,
    ResourceLimitExceeded,
    Unavailable,
)
from dndm_p2p.host.build import (
    HostConfig,
    admission_of,
    connect,
    handler_failures,
    listen_addrs,
    running_host,
    set_circuit_dialer,
)
from dndm_p2p.host.identity import generate_identity, load_or_create_identity
from dndm_p2p.node.addressbook import AddressBook
from dndm_p2p.node.admin import AdminServer
from dndm_p2p.node.advertiser import Advertiser
from dndm_p2p.node.best_effort import write_quietly
from dndm_p2p.node.components import AddressBookSaver, Component, Components
from dndm_p2p.node.events import EventHub
from dndm_p2p.node.link_registry import LinkRegistry
from dndm_p2p.node.moves import SessionMoves
from dndm_p2p.node.reconnect import Reconnector, peer_of
from dndm_p2p.node.resources import ResourceManager, ResourceSnapshot
from dndm_p2p.node.results import data_result
from dndm_p2p.node.session import PeerSession
from dndm_p2p.node.slow_subscribers import SlowSubscriberStats
from dndm_p2p.node.snapshots import known_routes, link_stats, peer_infos
from dndm_p2p.node.types import KnownRoute, LinkStats, NodeEvent, PeerInfo
from dndm_p2p.node.watcher import ConnectionWatcher
from dndm_p2p.nurseries import StackOwner, open_owned_nursery
from protocols.framing import FrameWriter
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID
from protocols.libp2p_fixes.yamux import receive_windows

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn, INetStream
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


class Node(StackOwner):
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
        self._sessions: dict[str, PeerSession] = {}
        self._starting: dict[str, trio.Event] = {}
        self._events = EventHub()
        self.errors: deque[DndmError] = deque(maxlen=_MAX_KEPT_ERRORS)
        self.error_count = 0
        self.dropped_streams = 0
        #: Control requests refused as over their peer's rate, by sessions that have ended.
        self._rate_limited_before = 0
        self._closing = False
        self._key_pair: KeyPair | None = None
        #: What each peer, and all peers together, may make this node hold.
        self._window_violators: set[str] = set()
        self.resource_manager = ResourceManager(
            self.config.limits, drop_peer=self._drop_over_limits
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
            dial=lambda addr, keep: self._join(addr, keep=keep),
            connected=lambda peer: self.session(peer) is not None,
            known_addrs=lambda peer_id: [str(a) for a in self._known_addrs(peer_id)],
            closing=lambda: self._closing,
            report_error=lambda error, peer: self.report_error(error, peer=peer),
        )
        self._moves = SessionMoves(lambda peer_id: self.host.get_network().get_connections(peer_id))
        self._advertiser = Advertiser(
            self.router,
            self._links,
            sessions=lambda: list(self._sessions.values()),
            discovery=lambda: self.discovery,
            closing=lambda: self._closing,
        )
        #: What the node's parts (sessions, discovery, the connection watcher) may ask of it.
        self._services = _NodeServices(self)
        self._components = Components()
        #: Finds and dials peers with matching routes (when discovery is configured).
        self.discovery: Discovery | None = None
        #: Connected libp2p peers that do not speak DNDM (no session is started with them).
        self.foreign_peers: set[str] = set()
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
            host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), self._on_control_stream)
            host.set_stream_handler(TProtocol(DATA_PROTOCOL_ID), self._on_data_stream)
            host.get_network().register_notifee(ConnectionWatcher(self._services))
            windows = receive_windows(host)
            if windows is not None:
                windows.listeners.append(self._on_window_violation)
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

    # -- request/reply -------------------------------------------------------------------------

    def caller(
        self,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        *,
        timeout: float | None = None,
        config: RpcConfig | None = None,
    ) -> Caller[Req, Resp]:
        """A :class:`~dndm_p2p.core.rpc.Caller` of the services of ``path`` (enter it to use it)."""
        return Caller(self, path, request_type, reply_type, timeout=timeout, config=config)

    def service(
        self,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Handler[Req, Resp],
        *,
        concurrency: int | None = None,
        config: RpcConfig | None = None,
    ) -> Service[Req, Resp]:
        """A :class:`~dndm_p2p.core.rpc.Service` answering ``path`` with ``handler`` (enter it)."""
        return Service(
            self, path, request_type, reply_type, handler, concurrency=concurrency, config=config
        )

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
        peer = await self._join(addr, keep=keep)
        if peer in self.foreign_peers:
            raise Unavailable(
                f"{peer} is not a DNDM node (it does not speak {CONTROL_PROTOCOL_ID})", peer=peer
            )
        return peer

    async def _join(self, addr: str, *, keep: bool) -> str:
        """Connect to the libp2p peer at ``addr``; return once it sent its hello or turned out
        to be foreign (then it is in :attr:`foreign_peers`).  See :meth:`connect`.

        :raises Unavailable: the peer cannot be reached, or its session failed or sent no
            hello within ``config.handshake_timeout``.
        """
        peer_id = await connect(self.host, addr, timeout=self.config.handshake_timeout)
        peer = str(peer_id)
        if self.address_book is not None:
            self.address_book.record(peer, [addr])
        if keep:
            self._reconnector.want(peer, addr)
        if peer in self.foreign_peers:
            return peer
        session = await self._session(peer_id)
        with trio.move_on_after(self.config.handshake_timeout) as scope:
            async with trio.open_nursery() as nursery:

                async def first_of(event: trio.Event) -> None:
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first_of, session.hello_received)
                nursery.start_soon(first_of, session.ended)
        if session.hello_received.is_set() or session.not_dndm:
            return peer
        if scope.cancelled_caught:
            raise Unavailable(f"{peer} connected but sent no hello")
        raise Unavailable(f"the session with {peer} failed: {session.error}", peer=peer)

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

    def _drop_over_limits(self, peer: str, error: ResourceLimitExceeded) -> None:
        """A peer kept exceeding its limits: end its session (its connection follows)."""
        self._events.emit(NodeEvent("peer_dropped", peer, str(error), error))
        session = self._sessions.get(peer)
        if session is not None:
            session.drop(error)

    def _on_window_violation(self, peer_id: ID, size: int) -> None:
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
        self.resource_manager.count_refusal(error)
        if peer not in self._window_violators:
            self._window_violators.add(peer)
            self.report_error(error, peer=peer)
            self._drop_over_limits(peer, error)
            if self._nursery is not None:
                self._nursery.start_soon(self._forget_violator, peer_id)

    async def _forget_violator(self, peer_id: ID) -> None:
        """Close the violator's connection; once closed it may be reported again."""
        with trio.move_on_after(5):
            try:
                await self.host.disconnect(peer_id)
            except Exception as exc:  # py-libp2p raises assorted errors for a closing connection
                self.report_error(Unavailable(f"closing the connection to {peer_id}: {exc}"))
        self._window_violators.discard(str(peer_id))
    def counters(self) -> dict[str, int]:
        """The node's protection counters, by name: every refusal, trim and limit hit.

        ``connections.*``: inbound connections refused by limit or trimmed (see
        :class:`~dndm_p2p.host.limits.ConnectionLimits`); ``handlers.failed``: protocol
        handlers that raised (the stream was reset); ``peerstore.*``: its size and the peers
        it forgot; ``dht.refused_requests``: DHT requests over a peer's rate limit;
        ``discovery.*``: dials discovery refused; ``control.rate_limited``: control requests
        (adverts, pings) refused as over their peer's rate; ``errors``, ``dropped_streams``.
        """
        found: dict[str, int] = {
            "errors": self.error_count,
            "dropped_streams": self.dropped_streams,
            "control.rate_limited": self._rate_limited_before
            + sum(session.stats.rate_limited for session in self._sessions.values()),
        }
        host = self._host
        if host is not None:
            admission = admission_of(host)
            if admission is not None:
                for name, value in admission.stats.as_dict().items():
                    found[f"connections.{name}"] = value
                found["connections.pending"] = admission.pending_count()
                found["connections.foreign"] = admission.foreign_count()
            found["handlers.failed"] = handler_failures(host).count
            store = host.get_peerstore()
            found["peerstore.peers"] = len(store.peer_ids())
            found["peerstore.evicted"] = int(getattr(store, "evicted", 0))
        if self.discovery is not None:
            found.update(self.discovery.counters())
        return found

    def session(self, peer: str) -> PeerSession | None:
        """The running session with ``peer``, if any."""
        session = self._sessions.get(peer)
        return session if session is not None and session.running else None

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
        return [session for session in self._sessions.values() if session.running]

    def _known_addrs(self, peer_id: ID) -> list[Multiaddr]:
        """The peerstore's addresses of ``peer_id`` (none when it has no record of the peer:
        py-libp2p raises there, and evicts peers beyond its capacity)."""
        try:
            return list(self.host.get_peerstore().addrs(peer_id))
        except PeerStoreError:
            return []

    # -- sessions ---------------------------------------------------------------------------------

    async def _session(self, peer_id: ID) -> PeerSession:
        peer = str(peer_id)
        while True:
            session = self._sessions.get(peer)
            if session is not None and session.running:
                return session
            starting = self._starting.get(peer)
            if starting is None:
                break
            await starting.wait()
        if self._closing or self._nursery is None:
            raise Closed("the node is closing")
        starting = self._starting[peer] = trio.Event()
        try:
            session = PeerSession(self._services, peer_id)
            self._sessions[peer] = session
            await self._nursery.start(session.run)
        finally:
            del self._starting[peer]
            starting.set()
        self._events.emit(NodeEvent("peer_connected", peer))
        return session

    async def _start_session_quietly(self, peer_id: ID) -> None:
        try:
            await self._session(peer_id)
        except Closed:
            return

    def _session_ended(self, session: PeerSession) -> None:
        """A session ended: forget it, tell the application, maybe reconnect."""
        if self._sessions.get(session.peer) is session:
            del self._sessions[session.peer]
        self._rate_limited_before += session.stats.rate_limited
        if self._moves.finish(session) and not self._closing and self._nursery is not None:
            self._events.emit(NodeEvent("peer_moved", session.peer, "to a direct connection"))
            self._nursery.start_soon(self._start_session_quietly, session.peer_id)
            return
        detail = str(session.error) if session.error is not None else ""
        if session.not_dndm:
            # A libp2p peer that does not speak DNDM (a go or js DHT node, say): keep the
            # connection for the protocols we share, and do not ask again while it lasts.
            self.foreign_peers.add(session.peer)
            self._events.emit(NodeEvent("peer_disconnected", session.peer, "not a DNDM node"))
            admission = admission_of(self.host)
            if admission is not None and self._nursery is not None and not self._closing:
                self._nursery.start_soon(admission.mark_foreign, session.peer_id)
            return
        self._events.emit(NodeEvent("peer_disconnected", session.peer, detail, session.error))
        if self._closing:
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._drop_connection, session.peer_id)
        # A peer dropped for exceeding its limits is not called back unless it is wanted.
        dropped = isinstance(session.error, ResourceLimitExceeded)
        if self._reconnector.is_wanted(session.peer) or (session.had_links and not dropped):
            self._reconnector.schedule(session.peer)

    async def _drop_connection(self, peer_id: ID) -> None:
        if self.session(str(peer_id)) is not None:
            return  # a new session already took over the peer's (new) connection
        try:
            await self.host.disconnect(peer_id)
        except Exception as exc:
            self.report_error(Unavailable(f"closing the connection to {peer_id}: {exc}"))

    def _connection_opened(self, conn: INetConn) -> None:
        """Start the session with a newly connected peer (in the node's nursery)."""
        peer_id = conn.muxed_conn.peer_id
        if self._closing or self._nursery is None or str(peer_id) in self.foreign_peers:
            return
        self._moves.note_connection(conn, self.session(str(peer_id)))
        self._nursery.start_soon(self._start_session_quietly, peer_id)

    def _last_connection_closed(self, peer_id: ID) -> None:
        """End the session when no connection to the peer is left."""
        peer = str(peer_id)
        self._moves.forget(peer)
        if peer in self.foreign_peers:
            self.foreign_peers.discard(peer)
            if self._reconnector.is_wanted(peer):  # a bootstrap node, say: keep it connected
                self._reconnector.schedule(peer)
        session = self._sessions.get(peer)
        if session is not None:
            session.close(ConnectionLost(f"connection to {peer_id} closed"))

    # -- stream handlers --------------------------------------------------------------------------

    async def _on_control_stream(self, stream: INetStream) -> None:
        await self._moves.retire_old_session(stream)
        try:
            session = await self._session(stream.muxed_conn.peer_id)
        except Closed:
            await stream.reset()
            return
        session.accept_control(stream)

    async def _on_data_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        await self._moves.retire_old_session(stream)
        try:
            session = await self._session(peer_id)
        except Closed:
            await stream.reset()
            return
        try:
            accepted = session.accept_data(stream)
        except ResourceLimitExceeded as exc:
            self.dropped_streams += 1
            self.report_error(exc, peer=str(peer_id))
            with trio.move_on_after(1):
                await write_quietly(FrameWriter(stream), data_result(exc))
            await stream.reset()
            return
        if not accepted:
            self.dropped_streams += 1
            self.report_error(
                ProtocolError(f"{peer_id} opened more than {self.config.max_links_per_peer} links"),
                peer=str(peer_id),
            )
            await stream.reset()


class _NodeServices:
    """What the node's parts may ask of it: each session (a
    :class:`~dndm_p2p.node.session.SessionHost`), discovery (a
    :class:`~dndm_p2p.discovery.component.DiscoveryContext`) and the connection watcher (a
    :class:`~dndm_p2p.node.watcher.ConnectionListener`)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.config = node.config
        self.name = node.name
        self.router = node.router
        self.report_error = node.report_error
        self.advertised_addrs = node.advertised_addrs
        self.dial = node._join
        self.capabilities = node._links.capabilities
        self.inbound_link = node._links.inbound_link
        self.outbound_link = node._links.outbound_link
        self.link_stream_ended = node._links.link_stream_ended
        self.peer_hello = node._links.peer_hello
        self.resources = node.resource_manager
        self.advert = node._advertiser.advert
        self.moving = node._moves.is_moving
        self.session_ended = node._session_ended
        self.known_addrs = node._known_addrs
        self.connection_opened = node._connection_opened
        self.last_connection_closed = node._last_connection_closed

    @property
    def host(self) -> IHost:
        return self._node.host

    @property
    def private_key(self) -> PrivateKey:
        return self._node.private_key

    @property
    def peer_id(self) -> str:
        return self._node.peer_id

    @property
    def closing(self) -> bool:
        return self._node._closing

    @property
    def incarnation(self) -> int:
        return self._node.incarnation

    @property
    def wanted_peers(self) -> frozenset[str]:
        return self._node._reconnector.wanted_peers

    @property
    def address_book(self) -> AddressBook | None:
        return self._node.address_book

    @property
    def addrs_changed(self) -> trio.Event | None:
        nat = self._node.nat
        return nat.changed if nat is not None else None

    def peer_adverts(self) -> Iterator[RemoteAdvert]:
        for session in self._node._running_sessions():
            yield from session.remote_intents.values()
            yield from session.remote_interests.values()

    def connected(self, peer: str) -> bool:
        return self._node.session(peer) is not None
