"""Fixes for py-libp2p's kad-dht, applied to one ``KadDHT`` (and its routing and provider store).

:func:`apply_kad_fixes` binds the fixed methods on the instances it is given, as instance
attributes; py-libp2p's classes are never changed, so every other ``KadDHT`` of the process
keeps the stock behaviour.  The defects are listed in the index, :mod:`protocols.libp2p_fixes`.

The replacements share one iterative lookup (:func:`iterative_lookup`): up to ALPHA queries in
flight (a sliding window, not lock-step rounds), bounded by :data:`LOOKUP_TIMEOUT` in total and
``QUERY_TIMEOUT`` per query, ending when the ``count`` closest non-failed peers known have all
answered.  Only peers that answered are returned and added to the routing table.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from enum import Enum
from types import MappingProxyType, MethodType
from typing import Any, Final, Protocol

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import (
    ALPHA,
    BUCKET_SIZE,
    MAX_DHT_MESSAGE_SIZE,
    PROTOCOL_ID,
    QUERY_TIMEOUT,
)
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.peer_routing import MIN_PEERS_THRESHOLD, PeerRouting
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.kad_dht.utils import maybe_consume_signed_record
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError, env_to_send_in_RPC
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited
from multiaddr import Multiaddr

__all__ = [
    "LOOKUP_TIMEOUT",
    "STOCK_METHODS",
    "LookupQuery",
    "RequestLimit",
    "RequestRefused",
    "apply_kad_fixes",
    "find_node",
    "iterative_lookup",
    "kad_fixes_applied",
    "seed_peers",
]

logger = logging.getLogger(__name__)

LOOKUP_TIMEOUT: Final = 30.0
"""Bound on one whole lookup in seconds (the libp2p Kademlia spec's recommendation)."""

_DISCOVERED_ADDR_TTL: Final = 3600
"""Peerstore TTL (s) of addresses learnt from DHT answers; py-libp2p uses the same."""

_RESET_GRACE: Final = 1.0
"""Seconds a cancelled query may spend resetting its stream, so the remote frees its slot."""

LookupQuery = Callable[[ID], Awaitable[Sequence[ID]]]
"""Ask one peer for the peers it knows closest to the key; raise if it does not answer."""

_OVERRIDDEN: Final = (
    (PeerRouting, "find_closest_peers_network"),
    (ProviderStore, "find_providers"),
    (ProviderStore, "provide"),
    (KadDHT, "_do_handle_stream"),
)

STOCK_METHODS: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {f"{cls.__name__}.{name}": cls.__dict__[name] for cls, name in _OVERRIDDEN}
)
"""The stock py-libp2p methods that :func:`apply_kad_fixes` overrides, by ``Class.method``."""


class _State(Enum):
    WAITING = "waiting"
    IN_FLIGHT = "in flight"
    ANSWERED = "answered"
    FAILED = "failed"


def _key_point(key: bytes) -> int:
    """A key's position in the DHT key space (py-libp2p hashes keys and peer ids alike)."""
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


async def iterative_lookup(
    target_key: bytes,
    seeds: Iterable[ID],
    query: LookupQuery,
    *,
    local_id: ID,
    count: int = BUCKET_SIZE,
    alpha: int = ALPHA,
    max_seconds: float = LOOKUP_TIMEOUT,
    enough: Callable[[], bool] | None = None,
) -> list[ID]:
    """Find the ``count`` peers closest to ``target_key`` that answer, Kademlia style.

    Keeps up to ``alpha`` queries in flight, each to one of the ``count`` closest candidates not
    yet asked; a peer's answer adds candidates, a failed query drops the peer.  Ends when the
    ``count`` closest candidates have all answered, when none is left, when ``enough()`` turns
    true (checked after every answer), or after ``max_seconds``.  Returns the peers that
    answered, closest first, at most ``count``; queries still in flight are cancelled.
    """
    target = _key_point(target_key)
    distance: dict[ID, int] = {}
    state: dict[ID, _State] = {}

    def learn(peer: ID) -> None:
        if peer != local_id and peer not in state:
            state[peer] = _State.WAITING
            distance[peer] = target ^ _key_point(peer.to_bytes())

    for peer in seeds:
        learn(peer)

    send, receive = trio.open_memory_channel[tuple[ID, Sequence[ID] | None]](math.inf)

    async def ask(peer: ID) -> None:
        try:
            found: Sequence[ID] | None = await query(peer)
        except Exception as exc:  # any failure of a remote peer only drops that peer
            logger.debug("lookup query to %s failed: %r", peer, exc)
            found = None
        send.send_nowait((peer, found))

    with send, receive, trio.move_on_after(max_seconds) as deadline:
        async with trio.open_nursery() as nursery:
            in_flight = 0
            while enough is None or not enough():
                live = (p for p, s in state.items() if s is not _State.FAILED)
                closest = heapq.nsmallest(count, live, key=distance.__getitem__)
                if all(state[p] is _State.ANSWERED for p in closest):
                    break
                for peer in closest:
                    if in_flight >= alpha:
                        break
                    if state[peer] is _State.WAITING:
                        state[peer] = _State.IN_FLIGHT
                        in_flight += 1
                        nursery.start_soon(ask, peer)
                peer, found = await receive.receive()
                in_flight -= 1
                if found is None:
                    state[peer] = _State.FAILED
                    continue
                state[peer] = _State.ANSWERED
                for new in found:
                    learn(new)
            nursery.cancel_scope.cancel()
    if deadline.cancelled_caught:
        logger.debug("lookup for %s ended by its %.0f s bound", target_key.hex(), max_seconds)
    answered = (p for p, s in state.items() if s is _State.ANSWERED)
    return heapq.nsmallest(count, answered, key=distance.__getitem__)


def seed_peers(routing: PeerRouting, target_key: bytes, count: int = BUCKET_SIZE) -> list[ID]:
    """Where a lookup starts: the routing table's closest peers, as py-libp2p picks them.

    Like the stock lookup, a routing table with fewer than ``MIN_PEERS_THRESHOLD`` peers is
    topped up with the connected peers, then with every peer in the peerstore.
    """
    seeds = list(routing.routing_table.find_local_closest_peers(target_key, count))
    if len(seeds) < MIN_PEERS_THRESHOLD:
        seeds.extend(routing.host.get_connected_peers())
        if len(seeds) < count:
            seeds.extend(routing.host.get_peerstore().peer_ids())
    return list(dict.fromkeys(seeds))


async def _rpc(routing: PeerRouting, peer: ID, request: Message) -> Message:
    """Send one request to ``peer`` on a new kad stream and return its (validated) answer."""
    request.senderRecord = env_to_send_in_RPC(routing.host)[0]
    payload = request.SerializeToString()
    with trio.fail_after(QUERY_TIMEOUT):
        stream = await routing.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
        try:
            await stream.write(encode_varint_prefixed(payload))
            answer = Message()
            answer.ParseFromString(
                await read_varint_prefixed_bytes_limited(stream, MAX_DHT_MESSAGE_SIZE)
            )
        except BaseException:
            await _reset(stream)
            raise
        await stream.close()
    if answer.type != request.type:
        raise ValueError(f"answer of type {answer.type} to a request of type {request.type}")
    if not maybe_consume_signed_record(answer, routing.host, peer):
        raise ValueError("answer carries an invalid signed peer record")
    return answer


async def _reset(stream: INetStream) -> None:
    """Reset a stream we give up on, even when cancelled, so the remote frees its slot."""
    with trio.move_on_after(_RESET_GRACE) as scope:
        scope.shield = True
        try:
            await stream.reset()
        except Exception as exc:  # the stream may already be broken; nothing more to free
            logger.debug("reset of an abandoned kad stream failed: %r", exc)


def _learn_peer(routing: PeerRouting, peer: Message.Peer) -> PeerInfo | None:
    """Record a peer named in an answer (signed record, addresses); None if it is unusable.

    A signed record that is not accepted (older than the one we hold, or invalid) does not
    make the peer unusable: its plain addresses are kept, as go-libp2p does.
    """
    if not peer.id:
        return None
    if not maybe_consume_signed_record(peer, routing.host):
        logger.debug("signed record of a closer peer not accepted; using its plain addresses")
    peer_id = ID(peer.id)
    addrs = []
    for raw in peer.addrs:
        try:
            addrs.append(Multiaddr(raw))
        except Exception as exc:  # one bad address must not hide the others
            logger.debug("ignoring a bad address of %s: %r", peer_id, exc)
    peerstore = routing.host.get_peerstore()
    if addrs:
        peerstore.add_addrs(peer_id, addrs, _DISCOVERED_ADDR_TTL)
    try:
        known = peerstore.addrs(peer_id)
    except PeerStoreError:  # not known, or its addresses expired: it cannot be dialled
        return None
    return PeerInfo(peer_id, known) if known else None


async def _closer_peers(routing: PeerRouting, peer: ID, answer: Message) -> list[ID]:
    """The dialable peers of an answer's ``closerPeers``; the answering peer joins the table."""
    await routing.routing_table.add_peer(peer)
    local = routing.host.get_id()
    closer = (_learn_peer(routing, p) for p in answer.closerPeers)
    return [info.peer_id for info in closer if info is not None and info.peer_id != local]


async def find_node(routing: PeerRouting, peer: ID, target_key: bytes) -> list[ID]:
    """One FIND_NODE query: the peers ``peer`` knows closest to ``target_key``."""
    answer = await _rpc(routing, peer, Message(type=Message.MessageType.FIND_NODE, key=target_key))
    return await _closer_peers(routing, peer, answer)


async def _find_closest_peers_network(
    self: PeerRouting, target_key: bytes, count: int = BUCKET_SIZE
) -> list[ID]:
    """The ``count`` peers closest to ``target_key`` that answered an iterative FIND_NODE
    lookup (:func:`iterative_lookup`), closest first."""

    async def query(peer: ID) -> list[ID]:
        return await find_node(self, peer, target_key)

    seeds = seed_peers(self, target_key, count)
    return await iterative_lookup(
        target_key, seeds, query, local_id=self.host.get_id(), count=count
    )


async def _find_providers(self: ProviderStore, key: bytes, count: int = 20) -> list[PeerInfo]:
    """Up to ``count`` distinct providers of ``key``: the local records first, then those of
    one iterative GET_PROVIDERS lookup, which stops once ``count`` are known.  The addresses
    of providers and closer peers go to the peerstore; nothing is added to the local
    provider records."""
    found: dict[ID, PeerInfo] = {}
    for info in self.get_providers(key):
        found.setdefault(info.peer_id, info)
    routing = self.peer_routing
    if len(found) >= count or not isinstance(routing, PeerRouting):
        return list(found.values())[:count]

    async def query(peer: ID) -> list[ID]:
        request = Message(type=Message.MessageType.GET_PROVIDERS, key=key)
        answer = await _rpc(routing, peer, request)
        for provider in answer.providerPeers:
            info = _learn_peer(routing, provider)
            if info is not None:
                found.setdefault(info.peer_id, info)
        return await _closer_peers(routing, peer, answer)

    await iterative_lookup(
        key,
        seed_peers(routing, key),
        query,
        local_id=self.local_peer_id,
        enough=lambda: len(found) >= count,
    )
    return list(found.values())[:count]


def _quorum(targets: int) -> int:
    """How many of ``targets`` ADD_PROVIDER sends make a provide successful (a majority)."""
    return max(1, math.ceil(targets / 2))


async def _add_provider(store: ProviderStore, routing: PeerRouting, peer: ID, key: bytes) -> None:
    """Send one ADD_PROVIDER naming this node, then read the peer's echo (py-libp2p servers
    send one) or the end of the stream (Kubo), so that no unread data is left on the stream."""
    host = routing.host
    request = Message(type=Message.MessageType.ADD_PROVIDER, key=key)
    record = env_to_send_in_RPC(host)[0]
    request.senderRecord = record
    provider = request.providerPeers.add()
    provider.id = store.local_peer_id.to_bytes()
    provider.addrs.extend(addr.to_bytes() for addr in host.get_addrs())
    provider.signedRecord = record
    with trio.fail_after(QUERY_TIMEOUT):
        stream = await host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
        try:
            await stream.write(encode_varint_prefixed(request.SerializeToString()))
            if isinstance(stream, NetStream):
                await stream.close_write()
            with trio.move_on_after(QUERY_TIMEOUT / 2):
                await stream.read(MAX_DHT_MESSAGE_SIZE)  # the echo, or end of stream
        except StreamEOF:
            pass  # the peer ended the stream (Kubo): the request was read
        except BaseException:
            await _reset(stream)
            raise
        await stream.close()


async def _provide(self: ProviderStore, key: bytes) -> bool:
    """Provide ``key``: store the record locally, then send ADD_PROVIDER to the closest peers
    that answered the lookup, ALPHA at a time.  True when a majority of them took it (ADD_PROVIDER
    has no answer, so "took" means the request was written to an open stream).
    """
    routing = self.peer_routing
    if not isinstance(routing, PeerRouting):
        logger.error("provider store has no peer routing; cannot provide %s", key.hex())
        return False
    self.providing_keys.add(key)
    self.add_provider(key, PeerInfo(self.local_peer_id, list(self.host.get_addrs())))
    targets = [p for p in await routing.find_closest_peers_network(key) if p != self.local_peer_id]
    sent = 0
    limiter = trio.CapacityLimiter(ALPHA)

    async def send_one(peer: ID) -> None:
        nonlocal sent
        async with limiter:
            try:
                await _add_provider(self, routing, peer, key)
            except Exception as exc:  # one unreachable holder is counted, not fatal
                logger.debug("ADD_PROVIDER to %s failed: %r", peer, exc)
            else:
                sent += 1

    async with trio.open_nursery() as nursery:
        for peer in targets:
            nursery.start_soon(send_one, peer)
    ok = sent >= _quorum(len(targets))
    log = logger.info if ok else logger.warning
    log("provide %s: ADD_PROVIDER sent to %d of %d closest peers", key.hex(), sent, len(targets))
    return ok


#: The instance attribute of a ``KadDHT`` holding its per-peer request limit, if any.
_REQUEST_LIMIT_ATTR: Final = "_dndm_request_limit"


class RequestRefused(Exception):
    """A requester's DHT request was over its rate limit (the stream is then reset)."""


class _RateLimitedStream:
    """A DHT stream whose every request costs its requester one token of ``limit``.

    Reads hand out one whole varint-prefixed request at a time; when the requester has no token
    left for the next one, the read raises :class:`RequestRefused` (py-libp2p's handler then
    resets the stream).  Everything else is the wrapped stream's.
    """

    def __init__(self, stream: INetStream, limit: RequestLimit) -> None:
        self._stream = stream
        self._limit = limit
        self._peer = stream.muxed_conn.peer_id
        self._pending = b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if not self._pending:
            body = await read_varint_prefixed_bytes_limited(self._stream, MAX_DHT_MESSAGE_SIZE)
            if not self._limit.allow(self._peer):
                raise RequestRefused(f"DHT request from {self._peer} over its rate limit")
            self._pending = encode_varint_prefixed(body)
        size = len(self._pending) if n is None or n < 0 else n
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk


class RequestLimit(Protocol):
    """What :func:`apply_kad_fixes` needs of a per-peer request limit."""

    def allow(self, peer: ID) -> bool:
        """Whether ``peer`` may make one more request now (a refusal is counted)."""


async def _do_handle_stream(self: KadDHT, stream: INetStream) -> None:
    """Serve one inbound DHT stream as py-libp2p does, then add the requester to the routing
    table if it is not there (its request's signed record has given its addresses).

    With a request limit (:func:`apply_kad_fixes`), each request costs its requester a token;
    a request over the limit is not answered and its stream is reset."""
    limit = vars(self).get(_REQUEST_LIMIT_ATTR)
    served: Any = _RateLimitedStream(stream, limit) if limit is not None else stream
    await STOCK_METHODS["KadDHT._do_handle_stream"](self, served)
    requester = stream.muxed_conn.peer_id
    if not self.routing_table.peer_in_table(requester):
        await self.add_peer(requester, skip_server_mode_check=True)


_FIXES: Final[Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {
        "PeerRouting.find_closest_peers_network": _find_closest_peers_network,
        "ProviderStore.find_providers": _find_providers,
        "ProviderStore.provide": _provide,
        "KadDHT._do_handle_stream": _do_handle_stream,
    }
)


def _fixed_objects(kad: KadDHT) -> dict[str, object]:
    """The objects of ``kad`` whose methods the fixes override, by py-libp2p class name."""
    return {"PeerRouting": kad.peer_routing, "ProviderStore": kad.provider_store, "KadDHT": kad}


def apply_kad_fixes(kad: KadDHT, *, request_limit: RequestLimit | None = None) -> KadDHT:
    """Bind the fixed methods on ``kad``, ``kad.peer_routing`` and ``kad.provider_store``.

    Call it before ``kad`` runs.  Idempotent; affects these three objects only.  Returns ``kad``.
    With ``request_limit`` (anything with ``allow(peer) -> bool``), every request ``kad``
    serves costs its requester one token; requests beyond it are refused (stream reset).
    """
    if request_limit is not None:
        setattr(kad, _REQUEST_LIMIT_ATTR, request_limit)
    objects = _fixed_objects(kad)
    for cls, name in _OVERRIDDEN:
        target = objects[cls.__name__]
        setattr(target, name, MethodType(_FIXES[f"{cls.__name__}.{name}"], target))
    return kad


def kad_fixes_applied(kad: KadDHT) -> bool:
    """Whether :func:`apply_kad_fixes` has bound every fixed method on ``kad``'s objects."""
    objects = _fixed_objects(kad)
    return all(
        getattr(vars(objects[cls.__name__]).get(name), "__func__", None)
        is _FIXES[f"{cls.__name__}.{name}"]
        for cls, name in _OVERRIDDEN
    )
