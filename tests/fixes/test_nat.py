"""The py-libp2p defects ``protocols/libp2p_fixes/nat.py`` works around: each test shows the
stock behaviour and ours side by side.  When a py-libp2p upgrade fixes one, its "stock"
assertion fails: drop the workaround and the assertion together.  (DCUtR's waits on unroutable
addresses, and the simultaneous-open collisions, need real NATs: ``tests/nat/test_nat_lab.py``
covers them.)
"""

from __future__ import annotations

import socket

import trio
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message
from multiaddr import Multiaddr

from dndm_p2p.host.build import connect, listen_addrs, running_host
from dndm_p2p.host.identity import generate_identity, peer_id_of
from protocols.libp2p_fixes.nat import DialBackAutoNAT, PunchingDCUtR, advertise_addrs


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_stock_autonat_calls_an_address_where_nothing_listens_reachable() -> None:
    nowhere = Multiaddr(f"/ip4/127.0.0.1/tcp/{_closed_port()}").to_bytes()
    with trio.fail_after(20):
        async with running_host(generate_identity()) as server, running_host(
            generate_identity()
        ) as client:
            await connect(client, listen_addrs(server)[0])
            asker = AutoNATService(client, serve=False)
            stock = AutoNATService(server, serve=True)
            status, _ = await asker.query_server(server.get_id(), [nowhere])
            assert status == Message.OK  # the defect: the request's own connection "answers"
            ours = DialBackAutoNAT(server, serve=True, timeout=5)  # replaces the handler
            status, _ = await asker.query_server(server.get_id(), [nowhere])
            assert status == Message.E_DIAL_ERROR
            real = listen_addrs(client)[0].decapsulate(Multiaddr(f"/p2p/{client.get_id()}"))
            status, addr = await asker.query_server(server.get_id(), [real.to_bytes()])
            assert status == Message.OK
            assert addr is not None
            assert Multiaddr(addr) == real
            assert ours.dialbacks == 2
            assert ours.dialback_successes == 1
            assert client.get_network().get_connections(server.get_id()), "request conn kept"
            del stock


async def test_stock_get_addrs_turns_a_relayed_address_into_the_relays_address() -> None:
    relay = peer_id_of(generate_identity())
    circuit = Multiaddr(f"/ip4/198.18.0.2/tcp/4001/p2p/{relay}/p2p-circuit")
    with trio.fail_after(20):
        async with running_host(generate_identity()) as host:
            own = host.get_id()
            host._addrs_factory = lambda candidates: [circuit]
            assert [str(a) for a in host.get_addrs()] == [f"/ip4/198.18.0.2/tcp/4001/p2p/{own}"]
            advertise_addrs(host, lambda: [circuit])
            assert [str(a) for a in host.get_addrs()] == [f"{circuit}/p2p/{own}"]
            advertise_addrs(host, None)
            assert [str(a) for a in host.get_addrs()] == [f"/ip4/198.18.0.2/tcp/4001/p2p/{own}"]


async def test_punching_dials_only_routable_addresses() -> None:
    with trio.fail_after(20):
        async with running_host(generate_identity()) as host:
            dcutr = PunchingDCUtR(host)
            assert dcutr.dialable(Multiaddr("/ip4/198.18.2.2/tcp/4001"))
            assert dcutr.dialable(Multiaddr("/ip4/127.0.0.1/tcp/4001"))  # our own network
            assert not dcutr.dialable(Multiaddr("/ip4/10.2.0.2/tcp/4001"))
            assert not dcutr.dialable(Multiaddr("/ip4/192.168.1.9/tcp/4001"))
            with trio.fail_after(0.5):  # returns at once: no dial, no 10 s timeout
                await dcutr._dial_peer(host.get_id(), Multiaddr("/ip4/10.2.0.2/tcp/4001"))
