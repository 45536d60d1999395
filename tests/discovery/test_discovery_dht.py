"""Discovery through the Kademlia DHT: keys, records, and nodes that know only a bootstrap node."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import cid
import pytest
import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from dht.keys import MAX_ROUTED_KEY_LENGTH, RouteSide, key_bytes, node_record_key, route_key
from dht.records import DndmValidator, open_node_record, sign_node_record
from dndm_p2p.config import DhtConfig, NodeConfig
from dndm_p2p.core.route import HashedRoute, PlainRoute
from dndm_p2p.errors import MalformedFrame
from dndm_p2p.host.build import HostConfig, running_host
from dndm_p2p.host.identity import generate_identity, load_or_create_identity
from dndm_p2p.node.node import Node
from protocols.libp2p_fixes.kad import apply_kad_fixes
from protocols.v1 import ping_pb2
from tests.support.discovery import (
    bootstrapped,
)
from tests.support.nodes import FAST, eventually, receive

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
        Node(NodeConfig(name="pub", dht=DhtConfig(), **FAST)) as pub,
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
    async with Node(NodeConfig(name="pub", dht=DhtConfig(), **FAST)) as pub:
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


async def test_a_bootstrap_node_down_at_start_is_joined_when_it_comes_up(tmp_path: Path) -> None:
    key_file = tmp_path / "boot.key"
    boot_id = str(ID.from_pubkey(load_or_create_identity(key_file).public_key))
    with socket.socket() as probe:  # a free port for the bootstrap node to come up on later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    boot_addr = f"/ip4/127.0.0.1/tcp/{port}"
    config = NodeConfig(name="n", dht=DhtConfig(), bootstrap=(f"{boot_addr}/p2p/{boot_id}",))
    async with Node(config) as node:
        assert any("no bootstrap node" in str(e) for e in node.errors)
        boot_config = NodeConfig(
            name="boot",
            dht=DhtConfig(),
            key_file=key_file,
            listen=(boot_addr,),
        )
        async with Node(boot_config) as boot:
            await eventually(lambda: node.session(boot.peer_id) is not None, seconds=30)
            dht = node.discovery.dht if node.discovery is not None else None
            assert dht is not None
            await eventually(lambda: dht.kad.get_routing_table_size() >= 1)


async def test_nodes_store_their_signed_addresses_in_the_dht() -> None:
    async with bootstrapped(2, dht=True, gossip=False) as (_, nodes):
        wanted = nodes[1]
        assert nodes[0].discovery is not None
        dht = nodes[0].discovery.dht
        assert dht is not None
        found = None
        with trio.fail_after(20):
            for _ in range(200):  # the record is stored shortly after the node joins
                found = await dht.get_node_record(wanted.peer_id)
                if found is not None:
                    break
                await trio.sleep(0.1)
        assert found is not None
        assert found.peer_id == wanted.peer_id
        assert found.name == wanted.name
        assert set(found.addrs) == {str(a) for a in wanted.advertised_addrs()}


async def test_py_libp2p_servers_route_no_key_longer_than_50_bytes() -> None:
    """The py-libp2p bug dht.keys.node_record_key works around: a server resets a FIND_NODE
    whose key is longer than 50 bytes (unless it is a multihash), so a lookup for such a key
    finds no peer and a value stored under it never leaves its writer."""
    async with (
        running_host(generate_identity(), HostConfig()) as server_host,
        running_host(generate_identity(), HostConfig()) as client_host,
    ):
        # Our lookup (which returns only peers that answered), as RouteDHT runs it.
        server = apply_kad_fixes(KadDHT(server_host, DHTMode.SERVER))
        client = apply_kad_fixes(KadDHT(client_host, DHTMode.SERVER))
        async with background_trio_service(server), background_trio_service(client):
            addr = f"{server_host.get_transport_addrs()[0]}/p2p/{server_host.get_id()}"
            await client_host.connect(info_from_p2p_addr(_maddr(addr)))
            await client.add_peer(server_host.get_id())
            long_key = f"/dndm/node/{client_host.get_id()}".encode()
            assert len(long_key) > MAX_ROUTED_KEY_LENGTH
            assert await client.peer_routing.find_closest_peers_network(long_key) == []
            short_key = node_record_key(str(client_host.get_id())).encode()
            assert len(short_key) <= MAX_ROUTED_KEY_LENGTH
            found = await client.peer_routing.find_closest_peers_network(short_key)
            assert found == [server_host.get_id()]
