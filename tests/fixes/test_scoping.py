"""The py-libp2p fixes stay on the objects they fix: a stock object built next to a fixed one is
stock, and py-libp2p's classes never change (``tests/conftest.py`` checks the latter after every
test; here the check itself is shown to work)."""

from __future__ import annotations

import trio
from libp2p import new_host
from libp2p.kad_dht.peer_routing import PeerRouting
from libp2p.network.swarm import Swarm

from dndm_p2p.host.build import running_host
from dndm_p2p.host.identity import generate_identity
from tests.support.libp2p_patches import changes, snapshot


async def test_a_fixed_host_leaves_a_fresh_swarm_stock() -> None:
    with trio.fail_after(20):
        async with running_host(generate_identity()) as host:
            fixed = host.get_network()
            assert isinstance(fixed, Swarm)
            assert {"close_peer", "_do_handle_inbound_connection"} <= vars(fixed).keys()
            fresh = new_host(key_pair=generate_identity()).get_network()
            assert not {"close_peer", "_do_handle_inbound_connection"} & vars(fresh).keys()
            assert fresh.close_peer.__func__ is vars(Swarm)["close_peer"]


def test_the_leak_check_sees_a_class_patched_process_wide() -> None:
    before = snapshot()
    stock = vars(PeerRouting)["find_closest_peers_network"]

    async def patched(self: PeerRouting, target_key: bytes, count: int = 20) -> list[object]:
        return []

    PeerRouting.find_closest_peers_network = patched  # type: ignore[method-assign,assignment]
    try:
        found = changes(before, snapshot())
    finally:
        PeerRouting.find_closest_peers_network = stock  # type: ignore[method-assign]
    assert found == ["libp2p.kad_dht.peer_routing:PeerRouting.find_closest_peers_network"]
    assert changes(before, snapshot()) == []
