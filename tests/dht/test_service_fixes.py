"""RouteDHT runs py-libp2p's kad-dht with the fixes of protocols.libp2p_fixes.kad, applied to
its own ``KadDHT`` only."""

from __future__ import annotations

import trio
from libp2p import new_host
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.peer_routing import PeerRouting

from dht.service import DhtConfig, RouteDHT
from dndm_p2p.host.build import running_host
from dndm_p2p.host.identity import generate_identity
from protocols.libp2p_fixes.kad import STOCK_METHODS, kad_fixes_applied


async def test_route_dht_fixes_its_own_kad_dht_and_a_fresh_one_is_stock() -> None:
    identity = generate_identity()
    with trio.fail_after(20):
        async with running_host(identity) as host, trio.open_nursery() as nursery:
            route_dht = RouteDHT(host, identity.private_key, DhtConfig(server=False))
            await nursery.start(route_dht.run)
            assert kad_fixes_applied(route_dht.kad)
            fresh = KadDHT(new_host(key_pair=generate_identity()), DHTMode.CLIENT)
            assert not kad_fixes_applied(fresh)
            stock = STOCK_METHODS["PeerRouting.find_closest_peers_network"]
            assert fresh.peer_routing.find_closest_peers_network.__func__ is stock
            assert vars(PeerRouting)["find_closest_peers_network"] is stock
            nursery.cancel_scope.cancel()
