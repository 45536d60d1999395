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

import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from google.protobuf.message import Message
from libp2p.abc import INotifee
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import RemoteAdvert, advert_for
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.qos import Overflow, QoS
from dndm_p2p.core.route import Route, message_full_name, parse_route
from dndm_p2p.core.router import Router
from dndm_p2p.discovery.component import Discovery
from dndm_p2p.errors import (
    Closed,
    ConfigError,
    ConnectionLost,
    DndmError,
    ProtocolError,
    Unavailable,
)
from dndm_p2p.host.build import HostConfig, connect, listen_addrs, running_host, set_circuit_dialer
from dndm_p2p.host.identity import generate_identity, load_or_create_identity
from dndm_p2p.node.addressbook import AddressBook
from dndm_p2p.node.admin import AdminServer
from dndm_p2p.node.inbound import InboundLink
from dndm_p2p.node.outbound import OutboundLink
from dndm_p2p.node.session import PeerSession
from dndm_p2p.nurseries import open_owned_nursery
from protocols import compression
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID
from protocols.v1 import advert_pb2, common_pb2, data_pb2

if TYPE_CHECKING:
    from libp2p.abc import IHost, IMuxedConn, INetConn, INetStream, INetwork
    from libp2p.crypto.keys import KeyPair, PrivateKey
    from multiaddr import Multiaddr

    from nat import NatEvent, NatService

__all__ = ["HostFactory", "KnownRoute", "LinkStats", "Node", "NodeEvent", "PeerInfo"]

T = TypeVar("T", bound=Message)

#: Builds the running host of a node from its key pair (see :class:`Node`).
HostFactory = Callable[["KeyPair"], AbstractAsyncContextManager["IHost"]]

_MAX_KEPT_ERRORS = 100
#: Seconds between saves of a changed address book.
_ADDRESS_BOOK_SAVE = 30.0


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something that happened to the node: a peer came or went, or background work failed."""

    kind: str
    peer: str | None = None
    detail: str = ""
    error: DndmError | None = None


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A snapshot of one remote link.

    ``direction`` is ``"out"`` for a peer's subscription to our route (we send) and ``"in"`` for
    ours to the peer's (we receive).  ``messages`` counts messages sent or received;
    ``dropped`` counts messages the publisher's link queue dropped (its subscriber's overflow
    policy), as counted by this end: the sender counts them as it drops them, the receiver as
    batches report them.
    """

    route: str
    peer: str
    direction: str
    messages: int
    dropped: int
    reliable: bool
    compression: str


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one connected peer."""

    peer: str
    name: str
    addrs: tuple[str, ...]
    rtt_us: int | None
    routes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KnownRoute:
    """One intent or interest the node knows of, and where it learnt of it.

    ``origin`` is ``"local"`` (declared here), ``"peer"`` (advertised by a connected peer on its
    control stream), ``"dht"`` (a provider record) or ``"gossip"`` (a GossipSub advert).
    ``route`` is the route or pattern as advertised; a hashed route shows only ``prefix#hash``.
    """

    route: str
    kind: str
    origin: str
    peer: str | None
    msg_type: str
    linked: bool


class Node:
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
        self._reconnecting: dict[str, trio.CancelScope] = {}
        #: Peers the application or the configuration asked for, with their addresses.
        self._wanted: dict[str, list[str]] = {}
        #: Reliable links to our routes, kept across their subscriber's reconnections.
        self._reliable_out: dict[tuple[str, str, int], OutboundLink] = {}
        #: Timers of reliable links whose subscriber is away.
        self._parked: dict[tuple[str, str, int], trio.CancelScope] = {}
        #: Our reliable subscriptions, kept across reconnections so they resume.
        self._reliable_in: dict[tuple[str, str], InboundLink] = {}
        self._sequence = itertools.count(1)
        self._event_channels: list[trio.MemorySendChannel[NodeEvent]] = []
        self.errors: deque[DndmError] = deque(maxlen=_MAX_KEPT_ERRORS)
        self.error_count = 0
        self.dropped_streams = 0
        self._closing = False
        self._compressions = compression.available() if self.config.compression else []
        self._key_pair: KeyPair | None = None
        #: Finds and dials peers with matching routes (when discovery is configured).
        self.discovery: Discovery | None = None
        #: Connected libp2p peers that do not speak DNDM (no session is started with them).
        self.foreign_peers: set[str] = set()
        #: Where the peers met are remembered across restarts (``config.address_book``).
        self.address_book: AddressBook | None = None
        #: Reachability, relays and hole punching (``config.nat``).
        self.nat: NatService | None = None
        #: Peers whose session is moving from a relayed connection to a direct one: the
        #: session that ran on the relayed connection, and that connection's muxer.
        self._moving: dict[str, tuple[PeerSession, IMuxedConn]] = {}

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
                self._emit(NodeEvent("warning", None, self.address_book.problem))
        stack = AsyncExitStack()
        try:
            if self._host_factory is not None:
                host_context = self._host_factory(key_pair)
            else:
                host_config = HostConfig(
                    listen=self.config.listen,
                    quic=self.config.quic,
                    max_connections=self.config.max_connections,
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
        host = self._host
        host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), self._on_control_stream)
        host.set_stream_handler(TProtocol(DATA_PROTOCOL_ID), self._on_data_stream)
        host.get_network().register_notifee(_ConnectionWatcher(self))
        self.router.add_observer(self)
        for addr in self.config.peers:
            self._wanted.setdefault(_peer_of(addr), []).append(addr)
            self._schedule_reconnect(_peer_of(addr), first_delay=0.0)
        try:
            await self._start_components()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def _start_components(self) -> None:
        """Start the admin socket, the address book's autosave and discovery, as configured."""
        config, nursery = self.config, self._nursery
        assert nursery is not None
        if config.nat is not None:
            from nat import NatService

            self.nat = NatService(
                self.host, config.nat, bootstrap=config.bootstrap, on_event=self._on_nat_event
            )
            await nursery.start(self.nat.run)
            set_circuit_dialer(self.host, self.nat.dial)
        if config.admin_socket is not None:
            admin = AdminServer(self, config.admin_socket, on_error=self._report_admin_error)
            await nursery.start(admin.run)
        if self.address_book is not None:
            await nursery.start(
                partial(self.address_book.autosave, _ADDRESS_BOOK_SAVE, on_error=self.report_error)
            )
        if config.discovers:
            self.discovery = Discovery(self)
            await nursery.start(self.discovery.run)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        self._closing = True
        self.router.close()
        return await stack.__aexit__(exc_type, exc, tb)

    async def _shutdown(self) -> None:
        """Close sessions and links before the host goes away (runs inside the nursery)."""
        self._closing = True
        self.router.close()
        if self._host is not None:
            set_circuit_dialer(self._host, None)
        for scope in self._parked.values():
            scope.cancel()
        self._parked.clear()
        for link in self._reliable_out.values():
            link.detach()
        self._reliable_out.clear()
        for scope in self._reconnecting.values():
            scope.cancel()
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close()
        # Sessions close their links in good order first; give them a moment.
        with trio.move_on_after(2.0):
            for session in sessions:
                await session.ended.wait()
        for channel in self._event_channels:
            channel.close()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def closing(self) -> bool:
        """True once the node has started to close."""
        return self._closing

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

    def publish(self, route: str | Route, msg_type: type[T], **options: Any) -> Intent[T]:
        """Declare an intent, here and at every peer (see :meth:`Router.publish`)."""
        return self.router.publish(route, msg_type, **options)

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
        """Connect to a peer (``/ip4/…/tcp/…/p2p/<id>``) and wait for its hello.

        With ``keep`` the node reconnects to it whenever the connection drops.  Raises
        :class:`Unavailable` when it cannot be reached.
        """
        peer_id = await connect(self.host, addr, timeout=self.config.handshake_timeout)
        peer = str(peer_id)
        if self.address_book is not None:
            self.address_book.record(peer, [addr])
        if keep and addr not in self._wanted.setdefault(peer, []):
            self._wanted[peer].append(addr)
        session = await self._session(peer_id)
        with trio.move_on_after(self.config.handshake_timeout) as scope:
            await session.hello_received.wait()
        if scope.cancelled_caught:
            raise Unavailable(f"{peer} connected but sent no hello")
        return peer

    def running_sessions(self) -> list[PeerSession]:
        """The sessions that run now, one per connected DNDM peer."""
        return [session for session in self._sessions.values() if session.running]

    def peers(self) -> list[PeerInfo]:
        """The peers with a running session."""
        found = []
        for session in self.running_sessions():
            addrs = tuple(str(a) for a in self.known_addrs(session.peer_id))
            found.append(
                PeerInfo(
                    session.peer,
                    session.remote_name,
                    addrs,
                    session.stats.rtt_us,
                    tuple(session.linked_routes()),
                )
            )
        return found

    def known_routes(self) -> list[KnownRoute]:
        """Every intent and interest known here: local ones and those of connected peers."""
        handles: list[Intent[Any] | Interest[Any]] = [*self.router.intents()]
        handles.extend(self.router.interests())
        known = [
            KnownRoute(
                _shown_route(handle),
                "intent" if isinstance(handle, Intent) else "interest",
                "local",
                None,
                message_full_name(handle.msg_type),
                bool(handle.tracker),
            )
            for handle in handles
        ]
        for session in self.running_sessions():
            for table, kind in (
                (session.remote_intents, "intent"),
                (session.remote_interests, "interest"),
            ):
                linked_routes = [link.route for link, _ in session.inbound.values()]
                linked_routes.extend(link.route for link in session.outbound)
                for advert in table.values():
                    shown = advert.route if advert.route is not None else advert.pattern
                    known.append(
                        KnownRoute(
                            str(shown),
                            kind,
                            "peer",
                            session.peer,
                            advert.type_name,
                            any(_advert_covers(advert, r) for r in linked_routes),
                        )
                    )
        if self.discovery is not None:
            known.extend(
                KnownRoute(entry.route, entry.kind, entry.origin, entry.peer, entry.msg_type, False)
                for entry in self.discovery.discovered()
            )
        return known

    def known_addrs(self, peer_id: ID) -> list[Multiaddr]:
        """The peerstore's addresses of ``peer_id`` (none when it has no record of the peer:
        py-libp2p raises there, and evicts peers beyond its capacity)."""
        try:
            return list(self.host.get_peerstore().addrs(peer_id))
        except PeerStoreError:
            return []

    def links(self) -> list[LinkStats]:
        """Every remote link of every running session, both directions."""
        found = []
        for session in self._sessions.values():
            for link, _ in session.inbound.values():
                found.append(
                    LinkStats(
                        str(link.route),
                        session.peer,
                        "in",
                        link.received,
                        link.dropped_by_publisher,
                        link.qos.reliable,
                        _compression_name(link.compression),
                    )
                )
            for out in session.outbound:
                found.append(
                    LinkStats(
                        str(out.route),
                        session.peer,
                        "out",
                        out.sent,
                        out.queue.dropped,
                        out.reliable,
                        _compression_name(out.compression),
                    )
                )
        return found

    @property
    def wanted_peers(self) -> frozenset[str]:
        """Peers the application or the configuration asked to keep connected."""
        return frozenset(self._wanted)

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
        send, receive = trio.open_memory_channel[NodeEvent](buffer)
        self._event_channels.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._event_channels:
                self._event_channels.remove(send)
            send.close()

    def _emit(self, event: NodeEvent) -> None:
        for channel in list(self._event_channels):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                # Closed at shutdown, or its consumer left events(): nobody reads it any more.
                if channel in self._event_channels:
                    self._event_channels.remove(channel)

    def report_error(self, error: DndmError, *, peer: str | None = None) -> None:
        """Record an error of background work and deliver it as an event."""
        self.errors.append(error)
        self.error_count += 1
        self._emit(NodeEvent("error", peer, str(error), error))

    def _report_admin_error(self, error: BaseException) -> None:
        if not isinstance(error, DndmError):
            error = ProtocolError(f"admin socket: {error!r}")
        self.report_error(error)

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
            session = PeerSession(self, peer_id)
            self._sessions[peer] = session
            await self._nursery.start(session.run)
        finally:
            del self._starting[peer]
            starting.set()
        self._emit(NodeEvent("peer_connected", peer))
        return session

    def session_ended(self, session: PeerSession) -> None:
        """Called by a session as it ends: forget it, tell the application, maybe reconnect."""
        if self._sessions.get(session.peer) is session:
            del self._sessions[session.peer]
        if self._moved(session):
            return
        detail = str(session.error) if session.error is not None else ""
        error = session.error
        if (
            error is not None
            and not session.hello_received.is_set()
            and _is_unsupported_protocol(error)
        ):
            # A libp2p peer that does not speak DNDM (a go or js DHT node, say): keep the
            # connection for the protocols we share, and do not ask again while it lasts.
            self.foreign_peers.add(session.peer)
            self._emit(NodeEvent("peer_disconnected", session.peer, "not a DNDM node"))
            return
        self._emit(NodeEvent("peer_disconnected", session.peer, detail, session.error))
        if self._closing:
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._drop_connection, session.peer_id)
        if session.peer in self._wanted or session.had_links:
            self._schedule_reconnect(session.peer)

    async def _drop_connection(self, peer_id: ID) -> None:
        if self.session(str(peer_id)) is not None:
            return  # a new session already took over the peer's (new) connection
        try:
            await self.host.disconnect(peer_id)
        except Exception as exc:
            self.report_error(Unavailable(f"closing the connection to {peer_id}: {exc}"))

    def _schedule_reconnect(self, peer: str, first_delay: float | None = None) -> None:
        if self._closing or self._nursery is None or peer in self._reconnecting:
            return
        scope = trio.CancelScope()
        self._reconnecting[peer] = scope
        self._nursery.start_soon(self._reconnect, peer, scope, first_delay)

    async def _reconnect(
        self, peer: str, scope: trio.CancelScope, first_delay: float | None
    ) -> None:
        config = self.config
        explicit = peer in self._wanted
        limit = None if explicit else config.reconnect_attempts
        delay = config.reconnect_initial
        try:
            with scope:
                for attempt in itertools.count(1):
                    wait = delay if first_delay is None or attempt > 1 else first_delay
                    await trio.sleep(wait * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, config.reconnect_max)
                    if self.session(peer) is not None:
                        return
                    for addr in self._addresses_of(peer):
                        try:
                            await self.connect(addr, keep=explicit)
                        except (Unavailable, Closed):
                            continue
                        return
                    if limit is not None and attempt >= limit:
                        self.report_error(Unavailable(f"gave up reconnecting to {peer}"), peer=peer)
                        return
        finally:
            if self._reconnecting.get(peer) is scope:
                del self._reconnecting[peer]

    def _addresses_of(self, peer: str) -> list[str]:
        if peer in self._wanted:
            return list(self._wanted[peer])
        try:
            peer_id = ID.from_base58(peer)
        except ValueError:
            return []
        addrs = self.known_addrs(peer_id)
        return [f"{addr}/p2p/{peer}" for addr in addrs if "/p2p/" not in str(addr)]

    # -- stream handlers --------------------------------------------------------------------------

    async def _on_control_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        await self._retire_moved_session(stream)
        try:
            session = await self._session(peer_id)
        except Closed:
            await stream.reset()
            return
        session.nursery.start_soon(session.serve_control, stream)

    async def _on_data_stream(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        await self._retire_moved_session(stream)
        try:
            session = await self._session(peer_id)
        except Closed:
            await stream.reset()
            return
        if session.pending_data_streams >= self.config.max_links_per_peer:
            self.dropped_streams += 1
            self.report_error(
                ProtocolError(f"{peer_id} opened more than {self.config.max_links_per_peer} links"),
                peer=str(peer_id),
            )
            await stream.reset()
            return
        session.pending_data_streams += 1
        session.nursery.start_soon(session.serve_data, stream)

    # -- NAT: a session moves from a relayed connection to a direct one ---------------------------
    # A hole punch adds a direct connection next to the relayed one, and the NAT component then
    # closes the relayed one.  The session on it ends (its streams go with the connection), and
    # a new one starts on the direct connection at once: reliable links resume where they
    # stopped, exactly as after a reconnection, but the direct connection is never dropped.

    def _on_nat_event(self, event: NatEvent) -> None:
        self._emit(NodeEvent(event.kind, event.peer, event.detail))

    def _note_connection(self, conn: INetConn) -> None:
        """A direct connection joined a relayed one with a running session: mark the move."""
        peer_id = conn.muxed_conn.peer_id
        peer = str(peer_id)
        session = self.session(peer)
        if session is None or _is_relayed(conn) or peer in self._moving:
            return
        for other in self.host.get_network().get_connections(peer_id):
            if other is not conn and _is_relayed(other):
                self._moving[peer] = (session, other.muxed_conn)
                return

    def moving(self, session: PeerSession) -> bool:
        """True while ``session``'s relayed connection is giving way to a direct one."""
        moving = self._moving.get(session.peer)
        return moving is not None and moving[0] is session

    def _moved(self, session: PeerSession) -> bool:
        """True (and a new session is on its way) when ``session`` ended because its relayed
        connection gave way to a direct one."""
        moving = self._moving.get(session.peer)
        if moving is None or moving[0] is not session:
            return False
        del self._moving[session.peer]
        remaining = [
            conn
            for conn in self.host.get_network().get_connections(session.peer_id)
            if conn.muxed_conn is not moving[1] and not _is_relayed(conn)
        ]
        if not remaining or self._closing or self._nursery is None:
            return False
        self._emit(NodeEvent("peer_moved", session.peer, "to a direct connection"))
        self._nursery.start_soon(_start_session_quietly, self, session.peer_id)
        return True

    async def _retire_moved_session(self, stream: INetStream) -> None:
        """A stream on the new connection of a moving peer: end the old session first (its
        connection is going), so that the stream is served by a new session."""
        moving = self._moving.get(str(stream.muxed_conn.peer_id))
        if moving is None or stream.muxed_conn is moving[1]:
            return
        old = moving[0]
        if old.running:
            old.nursery.cancel_scope.cancel()
        with trio.move_on_after(2.0):
            await old.ended.wait()

    # -- links ------------------------------------------------------------------------------------

    def capabilities(self) -> common_pb2.Capabilities:
        """What this node offers its peers."""
        return common_pb2.Capabilities(
            compression=self._compressions,
            reliability=True,
            max_frame_size=self.config.max_frame_size,
            max_batch_messages=4096,
        )

    def advert(self, handle: Intent[Any] | Interest[Any], *, register: bool) -> advert_pb2.Advert:
        """The advert of a local handle, with the next sequence number."""
        return advert_for(handle, register=register, sequence=next(self._sequence))

    def inbound_link(
        self, session: PeerSession, route: Route, msg_type: type[Message], qos: QoS
    ) -> InboundLink:
        """The link for a subscription of ours to ``route`` at the session's peer."""
        key = (session.peer, route.id)
        if qos.reliable:
            existing = self._reliable_in.get(key)
            if existing is not None and existing.msg_type is msg_type:
                existing.qos = qos
                return existing
        theirs = (
            list(session.remote_capabilities.compression) if session.remote_capabilities else []
        )
        link = InboundLink(
            self.router,
            route,
            msg_type,
            session.peer,
            next(_link_ids),
            qos,
            compression_choice=compression.negotiate(self._compressions, theirs),
            max_frame_size=self.config.max_frame_size,
        )
        if qos.reliable:
            self._reliable_in[key] = link
        return link

    def outbound_link(self, session: PeerSession, opening: data_pb2.LinkOpen) -> OutboundLink:
        """Accept a peer's LinkOpen: a new link, or the reliable link it resumes."""
        try:
            route = parse_route(opening.route)
        except DndmError as exc:
            raise ProtocolError(f"LinkOpen has an invalid route: {exc}") from None
        if opening.chosen not in (common_pb2.COMPRESSION_NONE, *self._compressions):
            raise ProtocolError(f"LinkOpen chose compression {opening.chosen}, not offered")
        if not 0 < opening.initial_credit <= 1 << 20:
            raise ProtocolError(f"LinkOpen grants {opening.initial_credit} credit")
        key = (session.peer, route.id, opening.link_id)
        existing = self._reliable_out.get(key)
        if existing is not None and not existing.queue.closed:
            timer = self._parked.pop(key, None)
            if timer is not None:
                timer.cancel()
            return existing
        link = OutboundLink(
            self.router,
            route,
            session.peer,
            opening,
            message_ttl=self.config.message_ttl,
            max_frame_size=self.config.max_frame_size,
        )
        link.attach()
        if link.reliable:
            self._reliable_out[key] = link
        return link

    def link_stream_ended(self, link: OutboundLink) -> None:
        """A stream of ``link`` ended: drop the link, or park a reliable one for its return."""
        key = (link.peer, link.route.id, link.link_id)
        if not link.reliable or link.queue.closed or self._closing or self._nursery is None:
            if self._reliable_out.get(key) is link:
                del self._reliable_out[key]
            link.detach()
            return
        if link.serving or key in self._parked:
            return  # a newer stream took it over, or its timer already runs
        scope = trio.CancelScope()
        self._parked[key] = scope
        self._nursery.start_soon(self._expire_parked, link, key, scope)

    async def _expire_parked(
        self, link: OutboundLink, key: tuple[str, str, int], scope: trio.CancelScope
    ) -> None:
        with scope:
            await trio.sleep(self.config.reliable_grace)
        if scope.cancelled_caught:
            return
        if self._parked.get(key) is scope:
            del self._parked[key]
        if not link.serving:
            if self._reliable_out.get(key) is link:
                del self._reliable_out[key]
            link.detach()

    # -- the router observer: advertise local declarations ----------------------------------------

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle appeared: tell every peer, and open links it needs."""
        if self.discovery is not None:
            self.discovery.declared(handle)
        advert = self.advert(handle, register=True)
        for session in list(self._sessions.values()):
            if session.running:
                session.queue_advert(advert)
                if isinstance(handle, Interest):
                    session.reconcile()

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle closed: tell every peer, and close links nobody needs any more."""
        if self._closing:
            return
        if self.discovery is not None:
            self.discovery.withdrawn(handle)
        advert = self.advert(handle, register=False)
        for session in list(self._sessions.values()):
            if not session.running:
                continue
            session.queue_advert(advert)
            if isinstance(handle, Interest):
                session.reconcile()
        if isinstance(handle, Intent):
            state = self.router.state(handle.route)
            if state is None or not state.has_local_intent:
                self._close_outbound(handle.route)

    def _close_outbound(self, route: Route) -> None:
        for session in self._sessions.values():
            for link in list(session.outbound):
                if link.route == route:
                    link.queue.close()
        for key, link in list(self._reliable_out.items()):
            if link.route == route:
                del self._reliable_out[key]
                timer = self._parked.pop(key, None)
                if timer is not None:
                    timer.cancel()
                link.detach()


_link_ids = itertools.count(1)


def _advert_covers(advert: RemoteAdvert, route: Route) -> bool:
    return advert.route == route if advert.route is not None else advert.matches(route)


def _shown_route(handle: Intent[Any] | Interest[Any]) -> str:
    if isinstance(handle, Interest) and handle.route is None:
        return str(handle.pattern)
    return str(handle.route)


def _is_unsupported_protocol(error: BaseException) -> bool:
    """True when ``error`` was caused by a peer answering "na" to our protocol (py-libp2p raises
    a bare MultiselectClientError for it, so its message is what tells)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ProtocolNotSupportedError) or (
            isinstance(seen, MultiselectClientError) and "not supported" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _compression_name(value: int) -> str:
    return common_pb2.Compression.Name(value).removeprefix("COMPRESSION_").lower()  # type: ignore[arg-type]


def _is_relayed(conn: INetConn) -> bool:
    """True for a connection through a relay (NAT traversal)."""
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:
        return False


def _peer_of(addr: str) -> str:
    _, sep, peer = addr.rpartition("/p2p/")
    if not sep or not peer or "/" in peer:
        raise ConfigError(f"{addr!r} has no /p2p/<peer id> part")
    return peer


class _ConnectionWatcher(INotifee):
    """A py-libp2p network notifee: starts a session when a connection appears and ends it when
    the last connection to the peer goes."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """Start the session with a newly connected peer (in the node's nursery)."""
        node = self._node
        if node._closing or node._nursery is None:
            return
        if str(conn.muxed_conn.peer_id) in node.foreign_peers:
            return
        node._note_connection(conn)
        node._nursery.start_soon(_start_session_quietly, node, conn.muxed_conn.peer_id)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """End the session when no connection to the peer is left."""
        peer_id = conn.muxed_conn.peer_id
        if network.get_connections(peer_id):
            return
        self._node._moving.pop(str(peer_id), None)
        self._node.foreign_peers.discard(str(peer_id))
        session = self._node._sessions.get(str(peer_id))
        if session is not None:
            session.close(ConnectionLost(f"connection to {peer_id} closed"))

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""


async def _start_session_quietly(node: Node, peer_id: ID) -> None:
    try:
        await node._session(peer_id)
    except Closed:
        return
