"""RouteDHT: provider records for routes, and lookups, on py-libp2p's kad-dht.

What it adds to :class:`libp2p.kad_dht.KadDHT` (which it runs):

* **Paced providing.**  py-libp2p's servers accept at most 10 ADD_PROVIDER messages per 10 s
  from one peer and silently drop the rest, while ``provide()`` still reports success.  Every
  provide here goes through one queue drained at :attr:`DhtConfig.provide_interval` (default
  1.1 s: at most 9 per 10 s to any receiver, whatever the number of routes).
* **Republishing** of every key still provided, every :attr:`DhtConfig.republish_interval`,
  through the same paced queue; a key withdrawn is never republished (and py-libp2p's own
  22-hour republisher, which is not paced, never sees our keys).
* **Complete lookups.**  :meth:`RouteDHT.find` walks towards the key with GET_PROVIDERS until
  the k closest peers have answered, collecting every distinct provider on the way (the
  fixed ``find_providers`` of :mod:`protocols.libp2p_fixes.kad`; the stock one stops at
  ``count`` answers, counts duplicates, and answers from the local store alone when it holds
  any record).
  Results are cached for :attr:`DhtConfig.lookup_ttl` seconds.
* **Node records** under ``/dndm/node/<peer id>`` (see :mod:`dht.records`), with
  ``strict_validation`` on and :class:`~dht.records.DndmValidator` registered.
* The kad-dht fixes of :mod:`protocols.libp2p_fixes.kad`, applied to this DHT (its
  ``KadDHT``, routing and provider store) only, before it starts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from dht.config import DhtConfig
from dht.keys import NODE_RECORD_NAMESPACE, key_bytes, node_record_key
from dht.records import DndmValidator, NodeAddresses, open_node_record, sign_node_record
from protocols.errors import MalformedFrame
from protocols.libp2p_fixes.kad import apply_kad_fixes
from protocols.ratelimit import KeyedRateLimit

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.crypto.keys import PrivateKey
    from trio_typing import TaskStatus

__all__ = ["DhtConfig", "DhtStats", "RouteDHT"]


@dataclass(slots=True)
class DhtStats:
    """Counters of one node's DHT use."""

    provides: int = 0
    provide_failures: int = 0
    lookups: int = 0
    lookup_hits: int = 0
    cache_hits: int = 0
    #: Seconds each network lookup took (the last 1000).
    lookup_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    #: Records other nodes tried to store that our validator refused.
    bad_records: int = 0
    #: Requests of other nodes refused because they were over their rate limit.
    refused_requests: int = 0


class RouteDHT:
    """Routes' provider records and node records on a running host (see the module docstring).

    Use as ``await nursery.start(route_dht.run)``; it stops when that task is cancelled.
    """

    def __init__(self, host: IHost, key: PrivateKey, config: DhtConfig, *, name: str = "") -> None:
        """Prepare the DHT of ``host`` (whose private key is ``key``)."""
        self.config = config
        self.stats = DhtStats()
        self._host = host
        self._key = key
        self._name = name
        self._kad: KadDHT | None = None
        #: Keys we provide (CID strings), with the time each was last provided.
        self._provided: dict[str, float] = {}
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._wakeup = trio.Event()
        self._cache: dict[str, tuple[float, tuple[PeerInfo, ...]]] = {}
        self._ready = trio.Event()

    @property
    def kad(self) -> KadDHT:
        """The running py-libp2p DHT."""
        if self._kad is None:
            raise RuntimeError("the DHT is not running")
        return self._kad

    @property
    def provided(self) -> frozenset[str]:
        """The keys this node currently provides."""
        return frozenset(self._provided)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the DHT and the paced provider until cancelled."""
        mode = DHTMode.SERVER if self.config.server else DHTMode.CLIENT
        limit = _CountingRequestLimit(self.config, self.stats)
        kad = apply_kad_fixes(
            KadDHT(self._host, mode, strict_validation=True), request_limit=limit
        )
        kad.register_validator(NODE_RECORD_NAMESPACE, _CountingValidator(self.stats))
        self._kad = kad
        try:
            async with background_trio_service(kad), trio.open_nursery() as nursery:
                nursery.start_soon(self._provide_loop)
                nursery.start_soon(self._republish_loop)
                self._ready.set()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._kad = None

    # -- routing table ----------------------------------------------------------------------------

    async def add_peers(self, peers: Iterable[ID]) -> int:
        """Seed the routing table with connected ``peers`` and look this node up; returns the
        routing table's size.

        py-libp2p does not add a peer to the routing table on connect: this is how a node
        joins through its bootstrap nodes (and peers found by mDNS or its address book).  The
        join is Kademlia's: one lookup of the node's own id, which fills the routing table with
        its neighbours and makes it known to them.  (py-libp2p's ``refresh_routing_table`` adds
        a lookup per bucket, connecting a joining node to most of a small mesh; its maintenance
        loop still runs one every 10 minutes.)
        """
        kad = self.kad
        for peer in peers:
            await kad.add_peer(peer)
        await kad.peer_routing.find_closest_peers_network(self._host.get_id().to_bytes())
        return int(kad.get_routing_table_size())

    # -- providing --------------------------------------------------------------------------------

    def provide(self, key: str) -> None:
        """Provide ``key`` (a CID from :func:`dht.keys.route_key`) now and until withdrawn.

        Never blocks: the record goes out through the paced queue.
        """
        if key in self._provided:
            return
        self._provided[key] = -math.inf
        self._enqueue(key)

    def withdraw(self, key: str) -> None:
        """Stop providing ``key``: it is not republished, and this node stops serving itself
        as its provider.  Records already stored elsewhere expire with their TTL."""
        self._provided.pop(key, None)
        if key in self._queued:
            self._queued.discard(key)
            self._queue.remove(key)
        kad = self._kad
        if kad is not None:
            raw = key_bytes(key)
            store = kad.provider_store
            store.providing_keys.discard(raw)
            records = store.providers.get(raw)
            if records is not None:
                records.pop(str(self._host.get_id()), None)
                if not records:
                    del store.providers[raw]

    def _enqueue(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._wakeup.set()

    async def _provide_loop(self) -> None:
        while True:
            if not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            key = self._queue.popleft()
            self._queued.discard(key)
            if key in self._provided:
                await self._provide_once(key)
                await trio.sleep(self.config.provide_interval)

    async def _provide_once(self, key: str) -> None:
        kad = self.kad
        raw = key_bytes(key)
        self.stats.provides += 1
        if not await kad.provider_store.provide(raw):
            self.stats.provide_failures += 1
        # py-libp2p's own republisher is not paced: ours does it (and forgets withdrawn keys).
        kad.provider_store.providing_keys.discard(raw)
        if key in self._provided:
            self._provided[key] = trio.current_time()
        else:
            self.withdraw(key)  # withdrawn while the record was going out

    async def _republish_loop(self) -> None:
        interval = self.config.republish_interval
        while True:
            await trio.sleep(min(interval / 4, 60.0))
            now = trio.current_time()
            for key, last in list(self._provided.items()):
                if now - last >= interval:
                    self._enqueue(key)

    # -- lookups ----------------------------------------------------------------------------------

    async def find(self, key: str, *, fresh: bool = False) -> tuple[PeerInfo, ...]:
        """Every provider of ``key`` the k closest peers know, except this node.

        A result younger than :attr:`DhtConfig.lookup_ttl` is reused unless ``fresh``.
        """
        now = trio.current_time()
        cached = self._cache.get(key)
        if not fresh and cached is not None and now - cached[0] < self.config.lookup_ttl:
            self.stats.cache_hits += 1
            return cached[1]
        found = await self._lookup(key_bytes(key))
        elapsed = trio.current_time() - now
        self.stats.lookups += 1
        self.stats.lookup_seconds.append(elapsed)
        if found:
            self.stats.lookup_hits += 1
        self._cache[key] = (trio.current_time(), found)
        if len(self._cache) > 4096:
            oldest = min(self._cache, key=lambda k: self._cache[k][0])
            del self._cache[oldest]
        return found

    async def _lookup(self, raw: bytes) -> tuple[PeerInfo, ...]:
        # One iterative GET_PROVIDERS walk (the fixed find_providers of
        # protocols.libp2p_fixes.kad) that ends when the k closest peers to the key have
        # answered, or enough providers are known.
        me = self._host.get_id()
        found = await self.kad.provider_store.find_providers(raw, self.config.max_providers + 1)
        peerstore = self._host.get_peerstore()
        result = []
        for info in found:
            if info.peer_id == me:
                continue
            if info.addrs:
                peerstore.add_addrs(info.peer_id, info.addrs, 3600)
            result.append(info)
        return tuple(result[: self.config.max_providers])

    # -- node records -----------------------------------------------------------------------------

    async def put_node_record(self, addrs: Sequence[str]) -> None:
        """Store this node's signed addresses under ``/dndm/node/<peer id>``."""
        peer_id = self._host.get_id()
        value = sign_node_record(self._key, peer_id, addrs, name=self._name)
        await self.kad.put_value(node_record_key(str(peer_id)), value)

    async def get_node_record(self, peer: str) -> NodeAddresses | None:
        """A peer's verified node record, or ``None`` when the DHT has none."""
        key = node_record_key(peer)
        value = await self.kad.get_value(key)
        if value is None:
            return None
        try:
            return open_node_record(key, value)
        except MalformedFrame:
            self.stats.bad_records += 1
            return None


class _CountingRequestLimit:
    """One token bucket per requesting peer (``DhtConfig.requests_per_second`` and
    ``request_burst``), counting refusals in ``DhtStats.refused_requests``."""

    def __init__(self, config: DhtConfig, stats: DhtStats) -> None:
        self._buckets = KeyedRateLimit(
            config.requests_per_second, config.request_burst, trio.current_time
        )
        self._stats = stats

    def allow(self, peer: ID) -> bool:
        if self._buckets.allow(peer):
            return True
        self._stats.refused_requests += 1
        return False


class _CountingValidator(DndmValidator):
    """:class:`DndmValidator` that also counts the records it refuses."""

    def __init__(self, stats: DhtStats) -> None:
        self._stats = stats

    def validate(self, key: str, value: bytes) -> None:
        """Validate, counting a refusal."""
        try:
            super().validate(key, value)
        except MalformedFrame:
            self._stats.bad_records += 1
            raise
