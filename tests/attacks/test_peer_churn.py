"""Finding 1: thousands of distinct peers churning through a node over its lifetime.

The churning hosts run in another OS process (``tests/support/attackers/churn.py``): each of
5,000 fresh identities connects, is identified both ways, and leaves, at most 8 at once.  The
node must keep running, keep answering identify, and keep its peer store within its bound.
"""

from __future__ import annotations

import pytest
import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.host.build import handler_failures, peerstore_size
from dndm_p2p.node.node import Node
from tests.support.attackers.runner import attacker

CHURNED = 5000
MAX_PEERS = 500
#: Seconds the whole churn may take on a loaded 2-core machine.
CHURN_TIME = 900.0


@pytest.mark.slow
@pytest.mark.timeout(CHURN_TIME + 60)
async def test_5000_distinct_peers_churn_through_a_node_that_stays_up_and_bounded() -> None:
    config = NodeConfig(max_peers=MAX_PEERS)
    async with Node(config) as node:
        largest = 0
        async with (
            attacker(
                "tests.support.attackers.churn",
                "--target",
                node.addrs[0],
                "--count",
                str(CHURNED),
                "--parallel",
                "8",
            ) as churn,
            trio.open_nursery() as nursery,
        ):

            async def watch_size() -> None:
                nonlocal largest
                while True:
                    largest = max(largest, peerstore_size(node.host))
                    await trio.sleep(0.05)

            nursery.start_soon(watch_size)
            done = await churn.event("done", seconds=CHURN_TIME)
            nursery.cancel_scope.cancel()
        evicted = node.counters()["peerstore.evicted"]
        print(f"churned {done['done']} peers: largest peer store {largest}, evicted {evicted}")
        assert done["done"] == CHURNED
        # Each peer was identified by the node and identified it: the node answered throughout.
        assert done["failed"] <= CHURNED // 100, done
        assert largest <= MAX_PEERS + config.max_connections
        assert peerstore_size(node.host) <= MAX_PEERS
        assert node.host.get_private_key() is not None  # its own identity is still there
        assert handler_failures(node.host).count == 0
