"""protocols.libp2p_fixes.kad: py-libp2p 0.8.1's kad-dht lookup bugs, shown on the stock code,
then fixed.

When a "stock" test fails after a py-libp2p upgrade, that bug is gone: delete the test and the
workaround together.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.peer_routing import PeerRouting
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from dndm_p2p.host.build import build_host
from dndm_p2p.host.identity import generate_identity
from protocols.libp2p_fixes.kad import (
    STOCK_METHODS,
    apply_kad_fixes,
    iterative_lookup,
    kad_fixes_applied,
    seed_peers,
)
from simnet.clock import key_pair_from, seeded_random
from simnet.hosts import running_sim_host
from simnet.net import SimNetwork, SimNode

KEY = random.Random(7).randbytes(32)


class SyntheticNetwork:
    """Peers whose FIND_NODE answers are fixed tables; counts the queries it answers."""

    def __init__(self, size: int, seed: int) -> None:
        rng = random.Random(seed)
        self.by_rank = sort_peer_ids_by_distance(KEY, [ID(rng.randbytes(34)) for _ in range(size)])
        self.tables: dict[ID, list[ID]] = {}
        self.queried: list[ID] = []

    def rank(self, first: int, last: int) -> list[ID]:
        """Peers ``first`` to ``last`` (inclusive) by distance to KEY, closest first."""
        return self.by_rank[first : last + 1]

    def closest_known(self, peer: ID, key: bytes, count: int = 20) -> list[ID]:
        return sort_peer_ids_by_distance(key, self.tables.get(peer, []))[:count]

    async def find_node(self, peer: ID, key: bytes) -> list[ID]:
        self.queried.append(peer)
        return self.closest_known(peer, key)


class FakeRoutingTable:
    def __init__(self, net: SyntheticNetwork, owner: ID) -> None:
        self.net, self.owner = net, owner

    def find_local_closest_peers(self, key: bytes, count: int = 20) -> list[ID]:
        return self.net.closest_known(self.owner, key, count)


class FakeHost:
    def __init__(self, peer_id: ID) -> None:
        self.peer_id = peer_id

    def get_id(self) -> ID:
        return self.peer_id

    def get_connected_peers(self) -> list[ID]:
        return []


def stock_routing(net: SyntheticNetwork, owner: ID) -> PeerRouting:
    """py-libp2p's PeerRouting whose FIND_NODE queries go to the synthetic network."""
    routing = PeerRouting(FakeHost(owner), FakeRoutingTable(net, owner))  # type: ignore[arg-type]
    routing._query_peer_for_closest = net.find_node  # type: ignore[method-assign]
    return routing


def unqueried_late_holder() -> tuple[SyntheticNetwork, ID]:
    """A network where only the 20th-closest peer we know can lead to the key's neighbourhood.

    We know peers 30..49 (by distance to KEY).  The ten closest of them know only far peers
    (100..119); peer 49 knows the true 20 closest (0..19), which know one another.
    """
    net = SyntheticNetwork(200, seed=1)
    me = net.by_rank[199]
    known = net.rank(30, 49)
    net.tables[me] = known
    for peer in known[:10]:
        net.tables[peer] = net.rank(100, 119)
    for peer in known[10:19]:
        net.tables[peer] = net.rank(120, 139)
    net.tables[known[19]] = net.rank(0, 19)
    for peer in net.rank(0, 19):
        net.tables[peer] = net.rank(0, 25)
    return net, me


async def test_stock_lookup_stops_while_closest_candidates_are_unqueried() -> None:
    net, me = unqueried_late_holder()
    stock = STOCK_METHODS["PeerRouting.find_closest_peers_network"]
    found: Sequence[ID] = await stock(stock_routing(net, me), KEY)
    # One round of ten answers changed nothing in the top 20, so the lookup ended there, with
    # ten of the twenty closest candidates never asked, and the key's neighbourhood unseen.
    assert len(net.queried) == 10
    assert net.by_rank[0] not in found
    assert set(found) == set(net.rank(30, 49))


async def test_fixed_lookup_asks_all_closest_candidates_and_reaches_the_key() -> None:
    net, me = unqueried_late_holder()

    async def query(peer: ID) -> list[ID]:
        return await net.find_node(peer, KEY)

    found = await iterative_lookup(KEY, seed_peers(stock_routing(net, me), KEY), query, local_id=me)
    assert found == net.rank(0, 19)
    # All 20 first candidates, then the 20 true closest: each asked exactly once.
    assert sorted(net.queried, key=net.by_rank.index) == net.rank(0, 19) + net.rank(30, 49)


async def test_fixed_lookup_drops_peers_that_fail_and_respects_alpha(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net, me = unqueried_late_holder()
    dead = set(net.rank(0, 4))
    in_flight = 0
    most_in_flight = 0

    async def query(peer: ID) -> list[ID]:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            await trio.sleep(0.01)
            if peer in dead:
                raise ConnectionError("unreachable")
            return await net.find_node(peer, KEY)
        finally:
            in_flight -= 1

    found = await iterative_lookup(
        KEY, seed_peers(stock_routing(net, me), KEY), query, local_id=me, alpha=3
    )
    # The dead five are dropped; the next closest that answered take their places.
    assert found == net.rank(5, 19) + net.rank(30, 34)
    assert most_in_flight == 3


def test_apply_is_idempotent_and_overrides_the_faulty_methods_of_that_dht_only() -> None:
    host = build_host(generate_identity())
    kad = apply_kad_fixes(KadDHT(host, DHTMode.CLIENT))
    first = (
        kad.peer_routing.find_closest_peers_network,
        kad.provider_store.find_providers,
        kad.provider_store.provide,
    )
    apply_kad_fixes(kad)
    assert kad_fixes_applied(kad)
    assert (
        kad.peer_routing.find_closest_peers_network,
        kad.provider_store.find_providers,
        kad.provider_store.provide,
    ) == first
    fresh = KadDHT(host, DHTMode.CLIENT)
    assert not kad_fixes_applied(fresh)
    classes = {cls.__name__: cls for cls in (PeerRouting, ProviderStore, KadDHT)}
    objects = {"PeerRouting": kad.peer_routing, "ProviderStore": kad.provider_store, "KadDHT": kad}
    fresh_objects = {
        "PeerRouting": fresh.peer_routing,
        "ProviderStore": fresh.provider_store,
        "KadDHT": fresh,
    }
    for name, stock in STOCK_METHODS.items():
        cls_name, method = name.split(".")
        assert vars(classes[cls_name])[method] is stock  # the class is untouched
        assert getattr(objects[cls_name], method).__func__ is not stock
        assert getattr(fresh_objects[cls_name], method).__func__ is stock
        assert stock.__module__.startswith("libp2p.kad_dht")


@asynccontextmanager
async def dht_mesh(size: int) -> AsyncIterator[tuple[list[IHost], list[KadDHT], list[SimNode]]]:
    """``size`` fixed KadDHT servers on real py-libp2p hosts over simnet (20 ms links), not
    joined."""
    net = SimNetwork(latency=0.02)
    nodes = [net.add_node() for _ in range(size)]
    keys = seeded_random(11, "keys")
    async with AsyncExitStack() as stack:
        hosts: list[IHost] = []
        dhts: list[KadDHT] = []
        for node in nodes:
            host = await stack.enter_async_context(running_sim_host(net, node, key_pair_from(keys)))
            dht = apply_kad_fixes(KadDHT(host, DHTMode.SERVER))
            await stack.enter_async_context(background_trio_service(dht))
            hosts.append(host)
            dhts.append(dht)
        yield hosts, dhts, nodes


async def join(host: IHost, dht: KadDHT, via: IHost, via_node: SimNode) -> None:
    """Connect to ``via``, put it in the routing table, look ourselves up."""
    await host.connect(PeerInfo(via.get_id(), [via_node.listen_addr()]))
    await dht.add_peer(via.get_id())
    await dht.peer_routing.find_closest_peers_network(host.get_id().to_bytes())


@pytest.mark.parametrize("fixed", [False, True])
async def test_a_server_learns_a_first_time_requester_only_with_the_fix(
    autojump_clock: trio.testing.MockClock, fixed: bool
) -> None:
    async with dht_mesh(2) as (hosts, dhts, nodes):
        if not fixed:
            stock = STOCK_METHODS["KadDHT._do_handle_stream"]
            dhts[1]._do_handle_stream = functools.partial(stock, dhts[1])  # type: ignore[method-assign]
        with trio.fail_after(30):
            await join(hosts[0], dhts[0], hosts[1], nodes[1])
            # Until the server is done with our stream (py-libp2p offers no event for it).
            while dhts[1]._inbound_limiter.borrowed_tokens:  # noqa: ASYNC110
                await trio.sleep(0.01)
        # Stock: the server looked for our address before reading our request, found none,
        # and served us without ever adding us.
        assert dhts[1].routing_table.peer_in_table(hosts[0].get_id()) is fixed


async def test_fixed_dht_mesh_provides_and_finds_from_every_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with dht_mesh(16) as (hosts, dhts, nodes):
        with trio.fail_after(120):
            for i in range(1, len(hosts)):
                await join(hosts[i], dhts[i], hosts[i - 1], nodes[i - 1])  # a chain
            key = (b"\x12\x20" + bytes(range(32))).hex()
            assert await dhts[3].provide(key)
            for i, dht in enumerate(dhts):
                if i != 3:
                    found = await dht.find_providers(key)
                    assert [info.peer_id for info in found] == [hosts[3].get_id()], i
