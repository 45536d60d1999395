"""The workarounds in protocols.libp2p_fixes.peerstore: first the py-libp2p 0.8.1 bug itself,
then the fix.

When one of the "bug" tests fails after a py-libp2p upgrade, the bug is gone: delete the test and
the workaround together.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import PublicKey
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore, PeerStoreError
from multiaddr import Multiaddr

from dndm_p2p.host.build import connect, handler_failures, listen_addrs, running_host
from protocols.libp2p_fixes.host import close_host, track_listeners
from protocols.libp2p_fixes.peerstore import BoundedPeerStore, guard_stream_handlers

ADDR = Multiaddr("/ip4/127.0.0.1/tcp/4001")


def fresh_peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


def test_bug_the_stock_peer_store_evicts_the_hosts_own_key_after_max_peers() -> None:
    store = PeerStore(max_peers=100)
    own = create_new_key_pair()
    own_id = ID.from_pubkey(own.public_key)
    store.add_key_pair(own_id, own)
    for _ in range(101):
        store.add_addrs(fresh_peer(), [ADDR])
    # What identify then does to answer a request (host.get_private_key()):
    with pytest.raises(PeerStoreError):
        store.privkey(own_id)


def test_the_bounded_peer_store_keeps_its_own_key_and_connected_peers() -> None:
    connected = {fresh_peer() for _ in range(5)}
    store = BoundedPeerStore(max_peers=100, is_connected=lambda peer: peer in connected)
    own = create_new_key_pair()
    own_id = ID.from_pubkey(own.public_key)
    store.add_key_pair(own_id, own)
    for peer in connected:
        store.add_addrs(peer, [ADDR])
    for _ in range(5000):
        peer = fresh_peer()
        store.add_pubkey(peer, _pubkey_of_nobody(peer))  # creates an entry without addresses
        store.add_protocols(peer, ["/ipfs/id/1.0.0"])
        assert len(store.peer_ids()) <= 100
    assert store.privkey(own_id) is own.private_key
    assert connected <= set(store.peer_ids())
    assert store.evicted >= 4900


def test_the_bounded_peer_store_evicts_the_least_recently_seen_first() -> None:
    store = BoundedPeerStore(max_peers=20)
    peers = [fresh_peer() for _ in range(20)]
    for peer in peers:
        store.add_addrs(peer, [ADDR])
    store.add_addrs(peers[0], [ADDR])  # seen again: now the most recent
    store.add_addrs(fresh_peer(), [ADDR])
    kept = set(store.peer_ids())
    assert peers[0] in kept
    assert peers[1] not in kept
    assert len(kept) < 20


def _pubkey_of_nobody(peer: ID) -> PublicKey:
    """The public key inside ``peer`` (an Ed25519 peer id carries it)."""
    key = peer.extract_public_key()
    assert key is not None
    return key


PROTOCOL = TProtocol("/test/raises/1.0.0")


async def raises(stream: INetStream) -> None:
    raise PeerStoreError("peer ID not found")


async def open_and_read(client: IHost, peer: ID) -> bytes:
    """Open a stream of :data:`PROTOCOL` to ``peer`` and read it until it ends or is reset."""
    try:
        stream = await client.new_stream(peer, [PROTOCOL])
        return bytes(await stream.read(1))
    except Exception:
        return b""


async def serve_until_the_swarm_fails(server: IHost, client: IHost) -> None:
    """Run stock ``server`` with the raising handler, trigger it from ``client``; return when
    the server's swarm has stopped."""
    swarm: Any = server.get_network()
    async with server.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            server.set_stream_handler(PROTOCOL, raises)
            peer = await connect(client, server.get_addrs()[0])
            await open_and_read(client, peer)
            with trio.fail_after(10):
                await swarm.manager.wait_finished()  # the swarm is gone
            assert swarm.manager.did_error
        finally:
            await close_host(server, grace=2)


async def test_bug_an_exception_in_a_protocol_handler_ends_the_host() -> None:
    async with running_host(create_new_key_pair()) as client:
        server = new_host(key_pair=create_new_key_pair())
        track_listeners(server)
        with pytest.raises(BaseExceptionGroup) as caught:
            await serve_until_the_swarm_fails(server, client)
        assert caught.group_contains(PeerStoreError)


async def test_an_exception_in_a_protocol_handler_leaves_the_host_running() -> None:
    async with (
        running_host(create_new_key_pair()) as server,
        running_host(create_new_key_pair()) as client,
    ):
        server.set_stream_handler(PROTOCOL, raises)
        server.set_stream_handler(ECHO, answer_ok)
        failures = handler_failures(server)
        assert failures is guard_stream_handlers(server)  # the one running_host installed
        peer = await connect(client, listen_addrs(server)[0])
        with trio.fail_after(10):
            for _ in range(3):
                assert await open_and_read(client, peer) == b""
            while failures.count < 3:  # noqa: ASYNC110 (a counter, no event to wait on)
                await trio.sleep(0.01)
        assert "PeerStoreError" in (failures.last or "")
        assert client.get_network().get_connections(server.get_id())
        with trio.fail_after(10):  # the host still serves, on the same connection
            stream = await client.new_stream(peer, [ECHO])
            assert await stream.read(2) == b"ok"


ECHO = TProtocol("/test/ok/1.0.0")


async def answer_ok(stream: INetStream) -> None:
    await stream.write(b"ok")
    await stream.close()


async def test_a_stock_host_built_next_to_ours_keeps_stock_handlers_and_peer_store() -> None:
    async with running_host(create_new_key_pair()) as ours:
        stock = new_host(key_pair=create_new_key_pair())
        assert type(ours.get_peerstore()) is BoundedPeerStore
        assert type(stock.get_peerstore()) is PeerStore
        swarm: Any = stock.get_network()
        assert swarm.common_stream_handler == stock._swarm_stream_handler  # type: ignore[attr-defined]
