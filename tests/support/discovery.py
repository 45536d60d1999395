"""Meshes of nodes that know only a bootstrap node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from dndm_p2p.config import DhtConfig, GossipConfig, NodeConfig
from dndm_p2p.node.node import Node


@asynccontextmanager
async def bootstrapped(
    count: int, *, dht: bool, gossip: bool
) -> AsyncIterator[tuple[Node, list[Node]]]:
    """A bootstrap server and ``count`` nodes that know only its address, discovering through
    the DHT, gossip, or both.

    Default health-check timings: a mesh of 20 pinging at FAST's rate saturates a small CPU.
    """
    dht_config = DhtConfig() if dht else None
    async with AsyncExitStack() as stack:
        boot_gossip = GossipConfig(relay_all=True) if gossip else None
        boot = await stack.enter_async_context(
            Node(NodeConfig(name="boot", dht=dht_config, gossip=boot_gossip))
        )
        nodes = []
        for i in range(count):
            node_config = NodeConfig(
                name=f"n{i}",
                bootstrap=(boot.addrs[0],),
                dht=dht_config,
                gossip=GossipConfig() if gossip else None,
            )
            nodes.append(await stack.enter_async_context(Node(node_config)))
        yield boot, nodes
