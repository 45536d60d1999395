"""Discovery in a 20-node mesh on 127.0.0.1: how soon a subscriber gets its first message.

A bootstrap server and 19 nodes that know only its address run in one process.  One node
publishes ``robot.arm.temp`` every 10 ms; subscribers on other nodes subscribe one after
another and each measures the time from ``subscribe()`` to its first message.  The figure is
measured with discovery through the DHT alone, through gossip alone, and with both, against a
baseline where the subscriber's node is connected to the publisher's directly beforehand (the
cost of linking alone, without discovery).  It also reports the DHT lookup time and how many
discovery messages each node sent (kad-dht RPC streams opened and GossipSub publishes).

Run: ``python -m benchmarks.bench_discovery [--nodes 20] [--subscribers 8]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from benchmarks.common import emit, summary
from dndm_p2p.config import DhtConfig, GossipConfig, NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.node.node import Node
from protocols.v1 import ping_pb2

ROUTE = "robot.arm.temp"
_KAD = "/ipfs/kad/1.0.0"


class _StreamCounter:
    """Counts the kad-dht streams a host opens (one per DHT RPC)."""

    def __init__(self, node: Node) -> None:
        self.kad_rpcs = 0
        host = node.host
        original = host.new_stream

        async def counting(peer_id: Any, protocols: Any, *args: Any, **kwargs: Any) -> Any:
            if any(str(p) == _KAD for p in protocols):
                self.kad_rpcs += 1
            return await original(peer_id, protocols, *args, **kwargs)

        host.new_stream = counting  # type: ignore[method-assign]


@asynccontextmanager
async def _mesh(
    count: int, *, dht: bool, gossip: bool
) -> AsyncIterator[tuple[list[Node], list[_StreamCounter]]]:
    """A bootstrap server (relaying every advert topic) and ``count - 1`` nodes that know it."""
    config: dict[str, Any] = {
        "dht": DhtConfig() if dht else None,
        "gossip": GossipConfig() if gossip else None,
    }
    boot_gossip = GossipConfig(relay_all=True) if gossip else None
    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            Node(NodeConfig(name="boot", dht=config["dht"], gossip=boot_gossip))
        )
        nodes = [boot]
        counters = [_StreamCounter(boot)]
        for i in range(count - 1):
            node_config = NodeConfig(name=f"n{i}", bootstrap=(boot.addrs[0],), **config)
            node = await stack.enter_async_context(Node(node_config))
            nodes.append(node)
            counters.append(_StreamCounter(node))
        yield nodes, counters


async def _ticker(intent: Intent[ping_pb2.Ping]) -> None:
    nonce = 0
    while True:
        nonce += 1
        intent.send_nowait(ping_pb2.Ping(nonce=nonce))
        await trio.sleep(0.01)


async def _first_message_times(
    pub: Node, subscribers: list[Node], *, connect_first: bool
) -> list[float]:
    times = []
    async with pub.publish(ROUTE, ping_pb2.Ping) as intent, trio.open_nursery() as nursery:
        nursery.start_soon(_ticker, intent)
        for node in subscribers:
            if connect_first:
                await node.connect(pub.addrs[0], keep=False)
            started = time.perf_counter()
            async with node.subscribe(ROUTE, ping_pb2.Ping) as interest:
                with trio.fail_after(60):
                    await interest.receive()
                times.append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    return times


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _run_mode(
    name: str, nodes: int, subscribers: int, *, dht: bool, gossip: bool
) -> dict[str, float]:
    async with _mesh(nodes, dht=dht, gossip=gossip) as (mesh, counters):
        pub = mesh[1]
        subs = mesh[2 : 2 + subscribers]
        before = [c.kad_rpcs for c in counters]
        times = await _first_message_times(pub, subs, connect_first=False)
        kad = [c.kad_rpcs - b for c, b in zip(counters, before, strict=True)]
        published = [
            n.discovery.gossip.stats.published
            for n in mesh
            if n.discovery is not None and n.discovery.gossip is not None
        ]
        lookups = [
            s
            for n in mesh
            if n.discovery is not None and n.discovery.dht is not None
            for s in n.discovery.dht.stats.lookup_seconds
        ]
    result = {
        "median": statistics.median(times),
        "p95": _percentile(times, 0.95),
        "kad_rpcs_per_node": statistics.mean(kad),
        "gossip_publishes_per_node": statistics.mean(published) if published else 0.0,
        "lookup_median": statistics.median(lookups) if lookups else float("nan"),
    }
    summary(f"{name}: {[round(t, 3) for t in times]}")
    return result


async def main(nodes: int, subscribers: int) -> None:
    """Measure every mode and print the figures."""
    logging.disable(logging.WARNING)
    # The baseline: nodes without discovery, the subscriber connected to the publisher first.
    baseline = await _direct_baseline(subscribers)
    emit(
        "subscribe to first message, direct connection (baseline)",
        baseline * 1000,
        unit="ms",
    )
    modes = {
        "dht": {"dht": True, "gossip": False},
        "gossip": {"dht": False, "gossip": True},
        "dht+gossip": {"dht": True, "gossip": True},
    }
    for mode, config in modes.items():
        result = await _run_mode(mode, nodes, subscribers, **config)
        baseline_name = "subscribe to first message, direct connection (baseline)"
        emit(
            f"subscribe to first message, {nodes} nodes, {mode}, median",
            result["median"] * 1000,
            unit="ms",
            baseline=baseline_name,
            baseline_value=baseline * 1000,
        )
        emit(
            f"subscribe to first message, {nodes} nodes, {mode}, p95",
            result["p95"] * 1000,
            unit="ms",
            baseline=baseline_name,
            baseline_value=baseline * 1000,
        )
        if config["dht"]:
            emit(
                f"DHT lookup, {nodes} nodes, {mode}, median",
                result["lookup_median"] * 1000,
                unit="ms",
            )
        emit(
            f"kad-dht RPCs sent per node while {subscribers} subscribers linked, {mode}",
            result["kad_rpcs_per_node"],
            unit="messages",
        )
        if config["gossip"]:
            emit(
                f"GossipSub publishes per node, {mode}",
                result["gossip_publishes_per_node"],
                unit="messages",
            )


async def _direct_baseline(subscribers: int) -> float:
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(Node(NodeConfig(name="pub")))
        subs = [
            await stack.enter_async_context(Node(NodeConfig(name=f"s{i}")))
            for i in range(subscribers)
        ]
        times = await _first_message_times(pub, subs, connect_first=True)
    summary(f"direct: {[round(t, 3) for t in times]}")
    return statistics.median(times)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=8)
    args = parser.parse_args()
    trio.run(main, args.nodes, args.subscribers)
