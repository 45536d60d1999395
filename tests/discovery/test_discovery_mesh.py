"""A 20-node mesh on 127.0.0.1 where nodes know only a bootstrap node: discovery through gossip
alone, and through the DHT and gossip together (the DHT alone is in test_discovery_dht.py)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from dndm_p2p.core.route import HashedRoute, PlainRoute
from dndm_p2p.node.node import Node
from protocols.v1 import ping_pb2
from tests.support.discovery import bootstrapped
from tests.support.nodes import receive

ROUTE = "robot.arm.temp"

pytestmark = pytest.mark.slow


async def _linked_and_delivered(pub: Node, subs: list[Node], route: str) -> None:
    """Subscribers on ``subs`` (one subscribing before the intent, the others after) all link
    with ``pub`` and receive its message."""
    async with (
        subs[0].subscribe(route, ping_pb2.Ping) as early,
        pub.publish(route, ping_pb2.Ping) as intent,
        AsyncExitStack() as stack,
    ):
        interests = [early]
        for node in subs[1:]:
            interests.append(await stack.enter_async_context(node.subscribe(route, ping_pb2.Ping)))
        with trio.fail_after(40):
            await intent.wait_links(lambda links: len(links) >= len(subs))
        await intent.send(ping_pb2.Ping(nonce=11))
        for interest in interests:
            assert [m.nonce for m in await receive(interest, 1)] == [11]


async def test_twenty_nodes_link_through_gossip_alone() -> None:
    async with bootstrapped(19, dht=False, gossip=True) as (_, nodes):
        await _linked_and_delivered(nodes[4], [nodes[9], nodes[13], nodes[18]], ROUTE)
        # Nobody dialled anybody without a reason: the subscribers and the publisher found each
        # other, the bystanders stayed connected to the bootstrap node only.
        bystander = nodes[7]
        assert len(bystander.host.get_network().connections) == 1


async def test_a_pattern_subscriber_receives_every_matching_route() -> None:
    async with bootstrapped(19, dht=True, gossip=True) as (_, nodes):
        watcher = nodes[2]
        routes = ["robot.arm.temp", "robot.leg.temp", "robot.head.temp"]
        publishers = [nodes[5], nodes[10], nodes[15]]
        async with (
            watcher.subscribe("robot.*.temp", ping_pb2.Ping) as interest,
            AsyncExitStack() as stack,
        ):
            intents = [
                await stack.enter_async_context(node.publish(route, ping_pb2.Ping))
                for node, route in zip(publishers, routes, strict=True)
            ]
            with trio.fail_after(40):
                await interest.wait_links(lambda links: len(links) >= len(routes))
                for intent in intents:  # the publishers' ends of the links are up too
                    await intent.wait_interest()
            for nonce, intent in enumerate(intents):
                await intent.send(ping_pb2.Ping(nonce=nonce))
            got = await receive(interest, len(routes))
            assert sorted(m.nonce for m in got) == [0, 1, 2]


async def test_a_hashed_route_name_appears_in_no_record_and_no_advert() -> None:
    plain = PlainRoute.of(ping_pb2.Ping, "secret.lab.camera")
    hashed = HashedRoute.from_plain(plain, prefix="secret", secret=b"capability")
    async with bootstrapped(9, dht=True, gossip=True) as (boot, nodes):
        await _linked_and_delivered(nodes[3], [nodes[6], nodes[8]], str(hashed))
        leaks = [b"secret.lab.camera", b"lab.camera", b"dndm.v1.Ping"]
        for node in [boot, *nodes]:
            for blob in _stored_blobs(node):
                for leak in leaks:
                    assert leak not in blob, f"{node.name} stores {leak!r}"


def _stored_blobs(node: Node) -> list[bytes]:
    """Everything a node keeps from the DHT and from gossip, as bytes."""
    blobs: list[bytes] = []
    discovery = node.discovery
    assert discovery is not None
    if discovery.dht is not None:
        kad = discovery.dht.kad
        for key, records in kad.provider_store.providers.items():
            blobs.append(bytes(key))
            blobs.extend(str(peer).encode() for peer in records)
        for key, (record, _) in kad.value_store.store.items():
            blobs.append(bytes(key))
            blobs.append(record.SerializeToString())
    blobs.extend(repr(entry).encode() for entry in discovery.advert_table.entries())
    blobs.extend(repr(entry).encode() for entry in discovery.discovered())
    return blobs
