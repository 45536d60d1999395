"""Discovery: find the peers whose intents and interests match ours, and link with them.

The node's control protocol already links everything two *connected* peers have in common (the
hello carries each side's full set).  Discovery's one job is therefore to connect to the right
peers, found three ways:

* **the DHT** (:class:`dht.service.RouteDHT`): a local intent provides its route's intent key and
  looks up the interest key; a local interest does the opposite; whichever side comes later
  finds the other.  Lookups repeat with a growing delay (0.5 s up to
  :data:`LOOKUP_MAX_INTERVAL`) for as long as the handle lives, so a record that arrived late, or a
  lookup that missed, is found again.  Patterns are never looked up (their routes are unknown).
* **GossipSub adverts** (:class:`dndm_p2p.discovery.gossip.GossipAdverts`): each handle is
  announced on its namespace's topic (see :mod:`dndm_p2p.discovery.namespaces`), and the node
  listens to the namespaces of its handles; pattern interests learn matching intents this way.
* **bootstrap nodes, mDNS and the address book**, which seed the DHT routing table and gossip mesh.

Discovery never holds the node: it asks its :class:`DiscoveryContext` for what the node lets it
see, and its only output is a dial request (:meth:`DiscoveryContext.dial`).  A peer found twice
is dialled once (the node keeps one session per peer; the session links each route once).  A
withdrawn handle stops its lookups, its records are no longer republished, and its gossip
advert is withdrawn; linked peers learn of it on the control stream as before.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo

from dht.config import DhtConfig
from dht.keys import RouteSide, route_key
from dht.service import RouteDHT
from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.route import PlainRoute, Route
from dndm_p2p.discovery.advert_table import AdvertTable
from dndm_p2p.discovery.config import DialLimits, GossipConfig, MdnsConfig
from dndm_p2p.discovery.dialing import DialGuard, own_addrs
from dndm_p2p.discovery.gossip import Announcement, GossipAdverts
from dndm_p2p.discovery.namespaces import namespace_of
from dndm_p2p.errors import Closed, ConfigError, DndmError, ProtocolError, Unavailable

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.crypto.keys import PrivateKey
    from multiaddr import Multiaddr
    from trio_typing import TaskStatus

    from dndm_p2p.core.router import Router
    from protocols.v1 import advert_pb2

__all__ = [
    "COVERED_DELAY",
    "LOOKUP_MAX_INTERVAL",
    "AddressMemory",
    "Discovered",
    "Discovery",
    "DiscoveryContext",
    "DiscoverySettings",
    "DiscoveryStats",
]

#: Longest delay between two DHT lookups for one handle, in seconds.
LOOKUP_MAX_INTERVAL: Final = 30.0
_FIRST_RETRY: Final = 0.5
#: Seconds discovery waits for a handle that a connected peer already matches.
COVERED_DELAY: Final = 1.0
#: Shortest time between two stores of the node record, in seconds.
_RECORD_MIN_INTERVAL: Final = 5.0
#: How many peers of the address book a node dials at start.
_REMEMBERED_PEERS: Final = 8


class DiscoverySettings(Protocol):
    """The settings discovery reads (a :class:`~dndm_p2p.config.NodeConfig` has them); a
    mechanism whose settings are None is off."""

    @property
    def dht(self) -> DhtConfig | None:
        """The route DHT's settings."""
        ...

    @property
    def gossip(self) -> GossipConfig | None:
        """Gossip adverts' settings."""
        ...

    @property
    def mdns(self) -> MdnsConfig | None:
        """mDNS's settings (the interfaces it runs on)."""
        ...

    @property
    def bootstrap(self) -> Sequence[str]:
        """Bootstrap nodes to join through (kept connected)."""
        ...


class AddressMemory(Protocol):
    """Peers met before, and where they were (the node's address book)."""

    def peers(self) -> list[str]:
        """The peers remembered, the most recently seen first."""
        ...

    def dial_addresses(self, peer: str) -> tuple[str, ...]:
        """Where to dial ``peer`` (``/…/p2p/<id>`` multiaddrs)."""
        ...

    def record(self, peer: str, addrs: Iterable[str]) -> None:
        """Remember that ``peer`` is reachable at ``addrs``."""
        ...


class DiscoveryContext(Protocol):
    """What discovery may ask of the node: what it sees, and a dial."""

    @property
    def config(self) -> DiscoverySettings:
        """Discovery's settings."""
        ...

    @property
    def host(self) -> IHost:
        """The libp2p host the DHT, gossip and mDNS run on."""
        ...

    @property
    def private_key(self) -> PrivateKey:
        """The key that signs the node record."""
        ...

    @property
    def name(self) -> str:
        """The node's name (for logs)."""
        ...

    @property
    def peer_id(self) -> str:
        """This node's peer id."""
        ...

    @property
    def router(self) -> Router:
        """The local intents and interests."""
        ...

    @property
    def closing(self) -> bool:
        """True once the node has started to close: no more dials."""
        ...

    @property
    def address_book(self) -> AddressMemory | None:
        """The peers met before (when the node keeps an address book)."""
        ...

    @property
    def addrs_changed(self) -> trio.Event | None:
        """Set when the addresses to advertise change (with NAT traversal; else None)."""
        ...

    def advertised_addrs(self) -> list[Multiaddr]:
        """The addresses to publish for others (no ``/p2p/<id>``)."""
        ...

    def advert(self, handle: Intent[Any] | Interest[Any], *, register: bool) -> advert_pb2.Advert:
        """The advert of a local handle, with the next sequence number."""
        ...

    def peer_adverts(self) -> Iterator[RemoteAdvert]:
        """The intents and interests of every connected peer with a running session."""
        ...

    def connected(self, peer: str) -> bool:
        """True while a session with ``peer`` runs."""
        ...

    def known_addrs(self, peer_id: ID) -> list[Multiaddr]:
        """The peerstore's addresses of ``peer_id``."""
        ...

    async def dial(self, addr: str, *, keep: bool) -> str:
        """Connect to the peer at ``addr`` (``/…/p2p/<id>``) and wait for its hello, or until it
        turns out not to speak DNDM (a go or js DHT node: connected all the same); returns its
        peer id.  With ``keep`` the node reconnects whenever the connection drops.  Raises
        :class:`Unavailable` or :class:`Closed` when that fails."""
        ...

    def report_error(self, error: DndmError, *, peer: str | None = None) -> None:
        """Record an error of background work."""
        ...


@dataclass(frozen=True, slots=True)
class Discovered:
    """An intent or interest of another node, learnt through discovery."""

    peer: str
    route: str
    kind: str
    origin: str
    msg_type: str
    #: ``trio.current_time()`` after which the entry is stale.
    expires: float


@dataclass(slots=True)
class DiscoveryStats:
    """What discovery did, for metrics and the closing figures."""

    dht_lookups: int = 0
    dht_provides: int = 0
    gossip_announcements: int = 0
    dials: int = 0
    dial_failures: int = 0


@dataclass(slots=True)
class _Watch:
    """What discovery does for one local handle."""

    scope: trio.CancelScope
    provided: str | None = None
    namespace: str | None = None


class Discovery:
    """The node's discovery component (see the module docstring)."""

    def __init__(self, node: DiscoveryContext) -> None:
        """Prepare discovery for the node that ``node`` shows; :meth:`run` starts it."""
        self._node = node
        self._config = node.config
        self.stats = DiscoveryStats()
        self.dht: RouteDHT | None = None
        self.gossip: GossipAdverts | None = None
        self._nursery: trio.Nursery | None = None
        self._watches: dict[int, _Watch] = {}
        self._dialing: set[str] = set()
        #: Providers the DHT named: (peer, route, kind) -> entry.
        self._discovered: dict[tuple[str, str, str], Discovered] = {}
        #: Adverts heard through gossip, with their expiry.
        self.advert_table = AdvertTable()
        limits = getattr(self._config, "dial_limits", None)
        #: What discovery may dial, and how often (see :mod:`dndm_p2p.discovery.dialing`).
        self.dial_guard = DialGuard(
            limits if isinstance(limits, DialLimits) else DialLimits(), trio.current_time
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the DHT and gossip, join through the bootstrap nodes, and serve until cancelled."""
        node, config = self._node, self._config
        async with trio.open_nursery() as nursery:
            if config.dht is not None:
                self.dht = RouteDHT(node.host, node.private_key, config.dht, name=node.name)
                await nursery.start(self.dht.run)
            if config.gossip is not None:
                self.gossip = GossipAdverts(
                    node.host, config.gossip, self._on_announcement, addrs=node.advertised_addrs
                )
                await nursery.start(self.gossip.run)
            self._nursery = nursery
            if config.mdns is not None:
                from dndm_p2p.discovery.mdns import MdnsDiscovery

                mdns = MdnsDiscovery(node.host, config.mdns.interfaces, self._on_mdns_peer)
                await nursery.start(mdns.run)
            await self._join(config.bootstrap, self._remembered())
            if self.dht is not None:
                nursery.start_soon(self._node_record_loop, self.dht)
            handles: list[Intent[Any] | Interest[Any]] = [*node.router.intents()]
            handles.extend(node.router.interests())
            for handle in handles:
                self.declared(handle)
            task_status.started()
            await trio.sleep_forever()

    def _remembered(self) -> list[str]:
        """Dial addresses of the peers met most recently, from the address book."""
        book = self._node.address_book
        if book is None:
            return []
        found = []
        for peer in book.peers()[:_REMEMBERED_PEERS]:
            addrs = book.dial_addresses(peer)
            if addrs:
                found.append(addrs[0])
        return found

    async def _join(self, bootstrap: Sequence[str], remembered: Sequence[str]) -> None:
        """Connect to the bootstrap nodes and remembered peers (in parallel) and seed the
        routing table with those that answered.  Bootstrap nodes are kept connected."""
        joined: list[ID] = []

        async def join_one(addr: str, keep: bool) -> None:
            try:
                peer = await self._node.dial(addr, keep=keep)
            except (Unavailable, Closed) as exc:
                if keep:
                    self._node.report_error(Unavailable(f"bootstrap node {addr}: {exc}"))
                return
            joined.append(ID.from_base58(peer))

        async with trio.open_nursery() as nursery:
            for addr in bootstrap:
                nursery.start_soon(join_one, addr, True)
            for addr in remembered:
                if addr not in bootstrap:
                    nursery.start_soon(join_one, addr, False)
        if bootstrap and not joined:
            self._node.report_error(Unavailable("no bootstrap node could be reached"))
        await self.seed(joined)
        reached = {str(peer) for peer in joined}
        assert self._nursery is not None
        for addr in bootstrap:
            if addr.rpartition("/p2p/")[2] not in reached:
                self._nursery.start_soon(self._retry_bootstrap, addr)

    async def _retry_bootstrap(self, addr: str) -> None:
        """Keep trying a bootstrap node that was down at start; seed the DHT once it answers."""
        delay = _FIRST_RETRY
        while True:
            await trio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, LOOKUP_MAX_INTERVAL)
            try:
                peer = await self._node.dial(addr, keep=True)
            except (Unavailable, Closed):
                continue
            await self.seed([ID.from_base58(peer)])
            return

    async def _node_record_loop(self, dht: RouteDHT) -> None:
        """Keep this node's signed addresses in the DHT: at start, whenever NAT traversal
        changes them, and at the republish interval."""
        node = self._node
        while True:
            changed = node.addrs_changed
            addrs = [str(addr) for addr in node.advertised_addrs()]
            try:
                await dht.put_node_record(addrs)
            except Exception as exc:  # py-libp2p raises assorted errors for a failed put
                node.report_error(Unavailable(f"storing the node record: {exc!r}"))
            with trio.move_on_after(dht.config.republish_interval):
                if changed is not None:
                    await changed.wait()
                    await trio.sleep(_RECORD_MIN_INTERVAL)  # let a burst of changes settle
                else:
                    await trio.sleep_forever()

    def _on_mdns_peer(self, peer: str, addrs: tuple[str, ...]) -> None:
        """mDNS found a peer on the LAN: remember it, connect, and add it to the DHT."""
        book = self._node.address_book
        try:
            peer_id = ID.from_base58(peer)
            if book is not None:
                book.record(peer, addrs)
        except (ValueError, ConfigError) as exc:
            self._node.report_error(ProtocolError(f"mDNS announced a bad peer or address: {exc}"))
            return
        self._dial(peer_id, addrs, source=f"mdns:{peer}")

    async def seed(self, peers: Sequence[ID]) -> None:
        """Add connected ``peers`` to the DHT routing table and refresh it."""
        if self.dht is not None and peers:
            await self.dht.add_peers(peers)

    # -- local declarations -----------------------------------------------------------------------

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle appeared: provide it, look up its other side, announce it.

        When a connected peer already has a matching handle, the link forms over that session
        at once, and discovery (which would compete with it for the CPU: tens of DHT RPCs and a
        signed gossip message) starts :data:`COVERED_DELAY` seconds later.
        """
        if self._nursery is None or handle.handle_id in self._watches:
            return
        watch = _Watch(trio.CancelScope())
        self._watches[handle.handle_id] = watch
        delay = COVERED_DELAY if self._covered(handle) else 0.0
        self._nursery.start_soon(self._discover, handle, watch, delay)
        # Adverts heard before this handle existed may match it.
        self.advert_table.expire()
        for entry in self.advert_table.entries():
            if entry.advert.register and self._wanted(entry.advert):
                self._dial(ID.from_base58(entry.peer), entry.addrs, source=f"gossip:{entry.peer}")

    def _covered(self, handle: Intent[Any] | Interest[Any]) -> bool:
        """True when a running session's peer has a handle of the other kind matching ours."""
        router = self._node.router
        for advert in self._node.peer_adverts():
            if isinstance(handle, Intent):
                if not advert.is_intent and advert.matches(handle.route):
                    return True
            elif (
                advert.is_intent
                and advert.route is not None
                and handle in router.lowlevel.matching_interests(advert.route)
            ):
                return True
        return False

    async def _discover(
        self, handle: Intent[Any] | Interest[Any], watch: _Watch, delay: float
    ) -> None:
        """Provide and announce ``handle``, then look its other side up for as long as it lives."""
        with watch.scope:
            await trio.sleep(delay)
            side = RouteSide.INTENT if isinstance(handle, Intent) else RouteSide.INTEREST
            route = handle.route
            if self.gossip is not None:
                target = route if route is not None else _pattern_of(handle)
                namespace = namespace_of(target, self.gossip.config.namespace_depth)
                if namespace is not None:
                    self.gossip.join(namespace)
                    self.gossip.announce(namespace, self._node.advert(handle, register=True))
                    watch.namespace = namespace
                    self.stats.gossip_announcements += 1
            if self.dht is not None and route is not None:
                watch.provided = route_key(route.id, side)
                self.dht.provide(watch.provided)
                self.stats.dht_provides += 1
                await self._lookup_loop(route, side.other)

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle closed: stop its lookups, records and adverts."""
        watch = self._watches.pop(handle.handle_id, None)
        if watch is None:
            return
        watch.scope.cancel()
        if watch.provided is not None and self.dht is not None:
            self.dht.withdraw(watch.provided)
        if watch.namespace is not None and self.gossip is not None:
            self.gossip.announce(watch.namespace, self._node.advert(handle, register=False))
            self.gossip.leave(watch.namespace)

    async def _lookup_loop(self, route: Route, side: RouteSide) -> None:
        """Look ``route``'s ``side`` up now and again later, dialling every provider found."""
        key = route_key(route.id, side)
        kind = side.value
        for attempt in itertools.count():
            dht = self.dht
            if dht is None:
                return
            self.stats.dht_lookups += 1
            # A find stays listed while the lookups that keep finding it go on.
            expires = trio.current_time() + 2 * LOOKUP_MAX_INTERVAL
            for info in await dht.find(key, fresh=attempt > 0):
                self._found(info.peer_id, _addrs_of(info), route, kind, expires)
            await trio.sleep(min(_FIRST_RETRY * 2**attempt, LOOKUP_MAX_INTERVAL))

    # -- gossip -----------------------------------------------------------------------------------

    def _on_announcement(self, announcement: Announcement) -> None:
        """A verified advert batch arrived on a namespace topic: dial the peer if it matches.

        Every matching register dials (a no-op when a session runs), not only new ones: a
        refresh retries a dial that failed before.
        """
        if announcement.peer == self._node.peer_id:
            return
        self.advert_table.apply(announcement)
        peer_id = ID.from_base58(announcement.peer)
        for advert in announcement.adverts:
            if advert.register and self._wanted(advert):
                self._dial(peer_id, announcement.addrs, source=f"gossip:{announcement.peer}")
                return

    def _wanted(self, advert: RemoteAdvert) -> bool:
        """True when a local handle of the other kind matches ``advert``."""
        router = self._node.router
        if advert.is_intent:
            return advert.route is not None and bool(
                router.lowlevel.matching_interests(advert.route)
            )
        return any(advert.matches(intent.route) for intent in router.intents())

    # -- dialling ---------------------------------------------------------------------------------

    def _found(
        self, peer_id: ID, addrs: tuple[str, ...], route: Route, kind: str, expires: float
    ) -> None:
        """The DHT names ``peer_id`` as a provider of ``route``'s ``kind`` side: list it, dial."""
        peer = str(peer_id)
        type_name = route.type_name if isinstance(route, PlainRoute) else ""
        self._discovered[(peer, str(route), kind)] = Discovered(
            peer, str(route), kind, "dht", type_name, expires
        )
        # The provider record's addresses are the answering node's word, not the provider's.
        self._dial(peer_id, addrs, source=f"dht:{peer}", signed=False)

    def _dial(
        self, peer_id: ID, addrs: Sequence[str], *, source: str, signed: bool = True
    ) -> None:
        """Connect to a discovered peer once (its session then links what matches).

        ``addrs`` were named by the peer itself when ``signed`` (a gossip advert, mDNS); else
        by a third party (a DHT answer), and then only the peer's own signed records are used.
        Every dial goes through :attr:`dial_guard`, on behalf of ``source``.
        """
        peer = str(peer_id)
        node = self._node
        if peer == node.peer_id or peer in self._dialing or node.connected(peer):
            return
        if self._nursery is None or node.closing:
            return
        self._dialing.add(peer)
        self._nursery.start_soon(self._connect, peer_id, tuple(addrs), source, signed)

    async def _candidates(self, peer_id: ID, addrs: tuple[str, ...], signed: bool) -> list[str]:
        """The addresses ``peer_id`` itself signed or announced: ``addrs`` when ``signed``;
        else (or when there are none) its signed peer record, then its DHT node record."""
        peer = str(peer_id)
        guard = self.dial_guard
        candidates: list[str] = []
        if signed:
            candidates, dropped = own_addrs(peer, addrs)
            guard.dropped_foreign(dropped)
        if not candidates:
            candidates, _ = own_addrs(peer, _signed_record_addrs(self._node.host, peer_id))
        if not candidates and self.dht is not None:
            record = await self.dht.get_node_record(peer)
            if record is not None:
                candidates, dropped = own_addrs(peer, record.addrs)
                guard.dropped_foreign(dropped)
        if not signed and addrs and not candidates:
            guard.dropped_foreign(len(addrs))
        return candidates[: guard.limits.max_addrs_per_peer]

    async def _connect(
        self, peer_id: ID, addrs: tuple[str, ...], source: str, signed: bool
    ) -> None:
        peer = str(peer_id)
        guard = self.dial_guard
        try:
            candidates = await self._candidates(peer_id, addrs, signed)
            error: DndmError = Unavailable(
                f"no address signed by discovered peer {peer} is known"
                if not signed and addrs
                else f"no address known for discovered peer {peer}"
            )
            for addr in candidates:
                if not guard.may_dial(source, addr):
                    error = Unavailable(
                        f"not dialling {addr} for discovered peer {peer}: it failed recently "
                        f"or {source} caused too many dials (DialLimits)"
                    )
                    continue
                self.stats.dials += 1
                try:
                    await self._node.dial(f"{addr}/p2p/{peer}", keep=False)
                except (Unavailable, Closed) as exc:
                    error = exc
                    guard.failed(addr)
                    self.stats.dial_failures += 1
                    continue
                guard.succeeded(addr)
                if self.dht is not None:
                    await self.dht.kad.add_peer(peer_id)
                return
            self._node.report_error(error, peer=peer)
        finally:
            self._dialing.discard(peer)

    # -- introspection ----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Discovery's refusals (dials, DHT requests), named for
        :meth:`dndm_p2p.node.Node.counters`."""
        found = self.dial_guard.counters.as_dict()
        if self.dht is not None:
            found["dht.refused_requests"] = self.dht.stats.refused_requests
        return found

    def discovered(self) -> list[Discovered]:
        """Current (unexpired) intents and interests learnt through the DHT and gossip."""
        self.advert_table.expire()
        now = trio.current_time()
        for key, found_entry in list(self._discovered.items()):
            if found_entry.expires <= now:
                del self._discovered[key]
        found = list(self._discovered.values())
        for entry in self.advert_table.entries():
            advert = entry.advert
            shown = str(advert.route if advert.route is not None else advert.pattern)
            kind = "intent" if advert.is_intent else "interest"
            found.append(
                Discovered(entry.peer, shown, kind, "gossip", advert.type_name, entry.expires_at)
            )
        return found


def _pattern_of(handle: Intent[Any] | Interest[Any]) -> Any:
    if isinstance(handle, Interest) and handle.pattern is not None:
        return handle.pattern
    raise TypeError(f"{handle!r} has neither a route nor a pattern")


def _signed_record_addrs(host: IHost, peer_id: ID) -> list[str]:
    """The addresses of ``peer_id``'s signed peer record in ``host``'s peerstore (py-libp2p
    checked its signature when it stored it), or none."""
    try:
        envelope = host.get_peerstore().get_peer_record(peer_id)
        if envelope is None:
            return []
        return [str(addr) for addr in envelope.record().addrs]
    except Exception:  # no record, or one that does not decode: nothing signed to use
        return []


def _addrs_of(info: Libp2pPeerInfo) -> tuple[str, ...]:
    """Dialable multiaddrs of a provider record, without their ``/p2p/<id>`` part."""
    found = []
    suffix = f"/p2p/{info.peer_id}"
    for addr in info.addrs:
        text = str(addr)
        # Only the trailing /p2p/<id>: a relayed address has another /p2p/ inside it.
        found.append(text.removesuffix(suffix))
    return tuple(dict.fromkeys(found))
