"""Adverts naming a third address: does the victim dial whatever address an advert names?

A second identity (``source``), connected only to the attacker's first host (the ``relay``),
publishes 20 gossip adverts of interest in the victim's route whose Announcement names as the
advertiser's address a TCP listener of ours on 127.0.0.1 (the "third address", standing in for
a host the attacker wants flooded).  The relay, connected to the victim, passes them on by
GossipSub.  ``stat`` counts the TCP connections that reach the third address.
"""

from __future__ import annotations

import sys
from functools import partial

import trio

from benchmarks.soak_attacks.peer import Report, Target, interest_advert, main

__all__ = ["ADVERTS", "attack"]

#: Adverts published.
ADVERTS = 20


async def attack(target: Target, report: Report) -> None:
    """Publish :data:`ADVERTS` adverts naming our listener and count who connects to it."""
    from multiaddr import Multiaddr

    from dndm_p2p.discovery.config import GossipConfig
    from dndm_p2p.discovery.gossip import GossipAdverts
    from dndm_p2p.discovery.namespaces import topic_for
    from dndm_p2p.host.build import HostConfig, connect, listen_addrs, running_host
    from dndm_p2p.host.identity import generate_identity

    async def count(stream: trio.SocketStream) -> None:
        report.stat += 1
        await stream.aclose()

    namespace = target.route.rpartition("@")[2].split(".")[0]
    config = GossipConfig(heartbeat=0.5, min_interval=0.1)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, count, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        third = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
        report.details["third_address"] = str(third)
        async with (
            running_host(generate_identity(), HostConfig()) as relay,
            running_host(generate_identity(), HostConfig()) as source,
        ):
            relay_gossip = GossipAdverts(relay, config, lambda _: None)
            source_gossip = GossipAdverts(source, config, lambda _: None, addrs=lambda: [third])
            await nursery.start(relay_gossip.run)
            await nursery.start(source_gossip.run)
            relay_gossip.join(namespace)
            source_gossip.join(namespace)
            with trio.fail_after(10.0):
                await connect(relay, target.addr)
                relay_addr = f"{listen_addrs(relay)[0]}/p2p/{relay.get_id()}"
                await connect(source, relay_addr)
            report.details["topic"] = topic_for(namespace)
            await trio.sleep(2.0)  # the mesh forms
            for handle in range(1, ADVERTS + 1):
                advert = interest_advert(
                    target.route, depth=8, block=False, reliable=False, handle_id=handle
                )
                source_gossip.announce(namespace, advert)
            report.details["adverts"] = ADVERTS
            await trio.sleep_forever()


if __name__ == "__main__":
    sys.exit(main("third_party_adverts", "connections", attack))
