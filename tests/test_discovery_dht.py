"""Discovery through the Kademlia DHT: keys, records, and nodes that know only a bootstrap node."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import cid
import pytest
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from dht.keys import RouteSide, key_bytes, node_record_key, route_key
from dht.records import DndmValidator, open_node_record, sign_node_record
from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import MalformedFrame
from dndm_p2p.host import HostConfig, running_host
from dndm_p2p.identity import generate_identity
from dndm_p2p.node import Node
from dndm_p2p.route import HashedRoute, PlainRoute
from protocols.v1 import ping_pb2

from .nodes import FAST, eventually, receive

ROUTE = "robot.arm.temp"


# -- keys and records --------------------------------------------------------------------------


def test_route_keys_are_cidv1_of_a_sha256_multihash() -> None:
    route = PlainRoute.of(ping_pb2.Ping, ROUTE)
    key = route_key(route.id, RouteSide.INTENT)
    parsed = cid.from_string(key)
    assert parsed.version == 1
    assert parsed.codec == "raw"
    assert key.startswith("b")  # base32, as go and js print CIDv1
    digest = hashlib.sha256(f"/dndm/v1/intent/{route}".encode()).digest()
    assert key_bytes(key) == b"\x12\x20" + digest
    assert route_key(route.id, RouteSide.INTEREST) != key


def test_a_hashed_route_key_derives_from_the_hash_alone() -> None:
    plain = PlainRoute.of(ping_pb2.Ping, ROUTE)
    one = HashedRoute.from_plain(plain, prefix="robot")
    other = HashedRoute.from_plain(plain, prefix="")
    # The prefix is a hint, not part of the key: the same hash gives the same key.
    assert route_key(one.id, RouteSide.INTENT) == route_key(other.id, RouteSide.INTENT)
    assert "robot" not in one.id
    assert ROUTE not in one.id


def test_node_records_verify_and_the_newest_wins() -> None:
    pair = generate_identity()
    peer = ID.from_pubkey(pair.public_key)
    key = node_record_key(str(peer))
    old = sign_node_record(pair.private_key, peer, ["/ip4/127.0.0.1/tcp/1"], sequence=1)
    new = sign_node_record(pair.private_key, peer, ["/ip4/127.0.0.1/tcp/2"], sequence=2)
    assert open_node_record(key, new).addrs == ("/ip4/127.0.0.1/tcp/2",)
    validator = DndmValidator()
    assert validator.select(key, [old, new]) == 1
    assert validator.select(key, [new, old]) == 0


def test_forged_and_oversize_node_records_are_refused() -> None:
    pair, mallory = generate_identity(), generate_identity()
    peer = ID.from_pubkey(pair.public_key)
    validator = DndmValidator()
    forged = sign_node_record(mallory.private_key, peer, ["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(MalformedFrame, match="signature"):
        validator.validate(node_record_key(str(peer)), forged)
    honest = sign_node_record(pair.private_key, peer, ["/ip4/127.0.0.1/tcp/1"])
    other = ID.from_pubkey(mallory.public_key)
    with pytest.raises(MalformedFrame, match="is for"):
        validator.validate(node_record_key(str(other)), honest)
    with pytest.raises(MalformedFrame, match="exceeds"):
        validator.validate(node_record_key(str(peer)), b"\x00" * 9000)
    with pytest.raises(MalformedFrame, match="decode"):
        validator.validate(node_record_key(str(peer)), b"\xff\xff\xff")
    with pytest.raises(MalformedFrame, match="not a"):
        validator.validate("/dndm/other/x", honest)


# -- a mesh that knows only its bootstrap node ----------------------------------------------------


@asynccontextmanager
async def bootstrapped(count: int, **config: Any) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A bootstrap server and ``count`` nodes that know only its address.

    Default health-check timings: a mesh of 20 pinging at FAST's rate saturates a small CPU.
    """
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            Node(NodeConfig(name="boot", bootstrap_server=True, **config))
        )
        nodes = []
        for i in range(count):
            node_config = NodeConfig(name=f"n{i}", bootstrap=(boot.addrs[0],), **config)
            nodes.append(await stack.enter_async_context(Node(node_config)))
        yield boot, nodes


@pytest.mark.slow
async def test_twenty_nodes_link_through_the_dht_alone() -> None:
    async with bootstrapped(19, dht=True, gossip=False) as (boot, nodes):
        early_sub, pub, late_sub = nodes[3], nodes[11], nodes[17]
        async with (
            early_sub.subscribe(ROUTE, ping_pb2.Ping) as early,
            pub.publish(ROUTE, ping_pb2.Ping) as intent,
            late_sub.subscribe(ROUTE, ping_pb2.Ping) as late,
        ):
            with trio.fail_after(30):
                await intent.wait_links(lambda links: len(links) >= 2)
            await intent.send(ping_pb2.Ping(nonce=7))
            assert [m.nonce for m in await receive(early, 1)] == [7]
            assert [m.nonce for m in await receive(late, 1)] == [7]
            found = {r.peer for r in late_sub.known_routes() if r.kind == "intent"}
            assert pub.peer_id in found
        assert boot.discovery is not None
        assert boot.discovery.dht is not None
        # The subscribers' and the publisher's records went out, paced, and were stored.
        assert pub.discovery is not None
        assert pub.discovery.dht is not None
        assert pub.discovery.dht.stats.provides >= 1


async def test_a_plain_libp2p_dht_peer_finds_our_provider_records() -> None:
    """A host configured like a go or js peer (kad-dht server, nothing of DNDM) finds who
    publishes a route by the route's CID key."""
    async with (
        Node(NodeConfig(name="pub", dht=True, **FAST)) as pub,
        running_host(generate_identity(), HostConfig()) as host,
    ):
        kad = KadDHT(host, DHTMode.SERVER)
        async with background_trio_service(kad):
            await host.connect(info_from_p2p_addr(_maddr(pub.addrs[0])))
            await kad.add_peer(ID.from_base58(pub.peer_id))
            assert pub.discovery is not None
            await pub.discovery.seed([host.get_id()])
            route = PlainRoute.of(ping_pb2.Ping, ROUTE)
            async with pub.publish(route, ping_pb2.Ping):
                key = route_key(route.id, RouteSide.INTENT)
                # Our node sends the plain peer an ADD_PROVIDER for the CID's multihash, as go
                # and js expect, and the plain peer stores it.
                await eventually(lambda: key_bytes(key) in kad.provider_store.providers)
                providers = await kad.find_providers(key)
                assert [str(p.peer_id) for p in providers] == [pub.peer_id]
            # Our node kept the connection to the non-DNDM peer and did not start a session.
            assert str(host.get_id()) in pub.foreign_peers
            assert pub.session(str(host.get_id())) is None
            assert host.get_network().get_connections(ID.from_base58(pub.peer_id))


async def test_a_closed_handle_is_no_longer_provided() -> None:
    async with Node(NodeConfig(name="pub", dht=True, **FAST)) as pub:
        assert pub.discovery is not None
        assert pub.discovery.dht is not None
        dht = pub.discovery.dht
        route = PlainRoute.of(ping_pb2.Ping, ROUTE)
        key = route_key(route.id, RouteSide.INTENT)
        async with pub.publish(route, ping_pb2.Ping):
            await eventually(lambda: key in dht.provided)
            await eventually(lambda: dht.stats.provides >= 1)
        assert key not in dht.provided
        assert key_bytes(key) not in dht.kad.provider_store.providing_keys


def _maddr(text: str) -> Any:
    from multiaddr import Multiaddr

    return Multiaddr(text)
