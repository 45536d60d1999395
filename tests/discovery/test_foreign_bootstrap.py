"""A go or js libp2p node as the only bootstrap node (issue 11, finding 8).

The bootstrap node is a py-libp2p kad-dht server in another OS process
(``tests/support/foreign_dht.py``): it serves the DHT and knows nothing of DNDM.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from libp2p.peer.id import ID

from dndm_p2p.config import DhtConfig, NodeConfig
from dndm_p2p.errors import Unavailable
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Foo
from tests.support.nodes import FAST, receive
from tests.support.processes import Proc, Record, cluster

FOREIGN_DHT = [sys.executable, "-m", "tests.support.foreign_dht"]
#: The start-up bound the issue sets for a node whose bootstrap node is not a DNDM node.
START_BOUND = 1.0


@asynccontextmanager
async def foreign_bootstrap() -> AsyncIterator[tuple[Proc, Record]]:
    """A running foreign kad-dht server process and its ``listening`` record."""
    async with cluster() as group:
        proc = await group.start("foreign-dht", FOREIGN_DHT)
        yield proc, await proc.event("listening")
        await proc.send(op="exit")


async def test_two_nodes_join_through_a_foreign_dht_node_at_once_and_link() -> None:
    async with foreign_bootstrap() as (server, listening), AsyncExitStack() as stack:
        boot_id = listening["peer"]
        nodes: list[Node] = []
        for name in ("pub", "sub"):
            config = NodeConfig(
                name=name, dht=DhtConfig(), bootstrap=(listening["addrs"][0],), **FAST
            )
            started = time.monotonic()
            node = await stack.enter_async_context(Node(config))
            took = time.monotonic() - started
            assert took < START_BOUND, f"{name} took {took:.2f} s to start"
            nodes.append(node)
        pub_node, sub_node = nodes
        for node in nodes:
            # Joined at once: the bootstrap node seeds the routing table, is known as foreign,
            # and keeps its connection (no DNDM session, no reconnection loop).
            assert node.discovery is not None
            assert node.discovery.dht is not None
            assert ID.from_base58(boot_id) in node.discovery.dht.kad.routing_table.get_peer_ids()
            assert boot_id in node.foreign_peers
            assert node.session(boot_id) is None
            assert node.host.get_network().get_connections(ID.from_base58(boot_id))
        async with (
            pub_node.publish("foreign.boot", Foo) as out,
            sub_node.subscribe("foreign.boot", Foo) as sub,
        ):
            with trio.fail_after(30):
                await out.wait_interest()
            await out.send(Foo(text="through a foreign bootstrap node"))
            assert [m.text for m in await receive(sub, 1, seconds=30)] == [
                "through a foreign bootstrap node"
            ]
        for node in nodes:
            assert not node.errors, list(node.errors)
        mark = server.mark()
        await server.send(op="table")
        table = await server.event("table", since=mark)
        assert {pub_node.peer_id, sub_node.peer_id} <= set(table["peers"])


async def test_connect_to_a_foreign_node_fails_at_once_and_keeps_the_connection() -> None:
    """The application's ``connect()`` asks for a DNDM peer: a foreign one is refused at once
    (not after the hello timeout), and its libp2p connection stays for the DHT."""
    async with foreign_bootstrap() as (_, listening), Node(NodeConfig(name="n", **FAST)) as node:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="not a DNDM node"):
            await node.connect(listening["addrs"][0])
        assert time.monotonic() - started < START_BOUND
        assert listening["peer"] in node.foreign_peers
        assert not node.errors, list(node.errors)
