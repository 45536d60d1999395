"""mDNS discovery on 127.0.0.1 only: hosts in one process find each other and never themselves.

Multicast goes through the loopback interface only (zeroconf is opened with
``interfaces=["127.0.0.1"]``).  Other processes on this machine may run mDNS on loopback at the
same time, so the tests look for their own peers among what is found, and never assume that
nothing else is found.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from libp2p.abc import IHost

from dndm_p2p.discovery.mdns import MdnsDiscovery, parse_txt
from dndm_p2p.errors import ConfigError
from dndm_p2p.host.build import HostConfig, running_host
from dndm_p2p.host.identity import generate_identity
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Foo

#: Discovery took 1-3 s in the py-libp2p probes; a loaded 2-core machine gets plenty more.
DISCOVERY_LIMIT = 20.0


class Finds:
    """What one MdnsDiscovery reported, with an event per new peer."""

    def __init__(self) -> None:
        self.peers: dict[str, tuple[str, ...]] = {}
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.changed = trio.Event()

    def __call__(self, peer: str, addrs: tuple[str, ...]) -> None:
        trio.lowlevel.current_task()  # raises RuntimeError outside trio
        self.threads.add(threading.get_ident())
        self.calls.append(peer)
        self.peers[peer] = addrs
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, peer: str) -> tuple[str, ...]:
        while peer not in self.peers:
            await self.changed.wait()
        return self.peers[peer]


@asynccontextmanager
async def hosts(count: int) -> AsyncIterator[list[IHost]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(running_host(generate_identity(), HostConfig()))
            for _ in range(count)
        ]


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


def _bare(host: IHost) -> tuple[str, ...]:
    return tuple(str(addr) for addr in host.get_transport_addrs())


async def test_hosts_in_one_process_each_find_the_others_and_never_themselves() -> None:
    threads_before = _threads()
    async with hosts(3) as three, trio.open_nursery() as nursery:
        finds = [Finds() for _ in three]
        start = time.monotonic()
        for host, found in zip(three, finds, strict=True):
            await nursery.start(MdnsDiscovery(host, ["127.0.0.1"], found).run)
        ids = [str(host.get_id()) for host in three]
        with trio.fail_after(DISCOVERY_LIMIT):
            for i, found in enumerate(finds):
                for j, host in enumerate(three):
                    if i != j:
                        addrs = await found.wait_for(ids[j])
                        assert addrs == _bare(host)
                        assert all(a.startswith("/ip4/127.0.0.1/tcp/") for a in addrs)
        elapsed = time.monotonic() - start
        print(f"3 hosts found each other in {elapsed:.2f} s")
        for own, found in zip(ids, finds, strict=True):
            assert own not in found.calls  # never itself
            assert found.threads == {threading.get_ident()}  # called in trio's thread
            # A peer is reported again only if its addresses change: once each here.
            assert sorted(p for p in found.calls if p in ids) == sorted(set(ids) - {own})
        nursery.cancel_scope.cancel()
    # Stopping leaves no zeroconf thread behind (the leaked-task check covers trio tasks).
    # trio keeps its idle worker threads ("Trio thread N") for reuse; any other is a leak.
    assert _threads() == threads_before


async def test_mdns_sends_through_the_given_interface_only() -> None:
    async with hosts(1) as (host,), trio.open_nursery() as nursery:
        mdns = MdnsDiscovery(host, ["127.0.0.1"], Finds())
        await nursery.start(mdns.run)
        zc = mdns._zeroconf
        assert zc is not None
        senders = zc.engine.senders  # zeroconf's sockets that send queries and answers
        assert senders
        for sender in senders:
            sock = sender.sock
            assert sock.getsockname()[0] == "127.0.0.1"
            multicast_if = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
            assert socket.inet_ntoa(multicast_if) == "127.0.0.1"
        nursery.cancel_scope.cancel()


async def test_a_node_that_stops_and_restarts_is_found_again() -> None:
    async with hosts(2) as (a, b), trio.open_nursery() as nursery:
        finds_a = Finds()
        await nursery.start(MdnsDiscovery(a, ["127.0.0.1"], finds_a).run)
        b_scope = trio.CancelScope()
        finds_b = Finds()

        async def run_b(task_status: trio.TaskStatus[None]) -> None:
            with b_scope:
                await MdnsDiscovery(b, ["127.0.0.1"], finds_b).run(task_status=task_status)

        await nursery.start(run_b)
        with trio.fail_after(DISCOVERY_LIMIT):
            await finds_a.wait_for(str(b.get_id()))
            await finds_b.wait_for(str(a.get_id()))
        b_scope.cancel()
        # b says goodbye; when it comes back (a new service name), a hears of it again.
        finds_a.peers.clear()
        await nursery.start(MdnsDiscovery(b, ["127.0.0.1"], Finds()).run)
        with trio.fail_after(DISCOVERY_LIMIT):
            await finds_a.wait_for(str(b.get_id()))
        nursery.cancel_scope.cancel()


async def test_an_exception_in_the_callback_ends_run() -> None:
    def broken(peer: str, addrs: tuple[str, ...]) -> None:
        raise RuntimeError("callback bug")

    async with hosts(2) as (a, b), trio.open_nursery() as nursery:
        await nursery.start(MdnsDiscovery(b, ["127.0.0.1"], Finds()).run)
        with pytest.raises(RuntimeError, match="callback bug"), trio.fail_after(DISCOVERY_LIMIT):
            await MdnsDiscovery(a, ["127.0.0.1"], broken).run()
        nursery.cancel_scope.cancel()


async def test_bad_interfaces_are_config_errors() -> None:
    async with hosts(1) as (host,):
        with pytest.raises(ConfigError, match="not an IP address"):
            MdnsDiscovery(host, ["lo"], Finds())
        with pytest.raises(ConfigError, match="not one string"):
            MdnsDiscovery(host, "127.0.0.1", Finds())
        with pytest.raises(ConfigError, match="at least one"):
            MdnsDiscovery(host, [], Finds())
        # The host listens on 127.0.0.1 only: nothing of it is reachable on 127.0.0.2.
        with pytest.raises(ConfigError, match="listens on no address of these interfaces"):
            await MdnsDiscovery(host, ["127.0.0.2"], Finds()).run()


async def test_a_wildcard_listen_address_is_announced_as_the_interface_address() -> None:
    config = HostConfig(listen=("/ip4/0.0.0.0/tcp/0",))
    async with running_host(generate_identity(), config) as host:
        port = str(host.get_transport_addrs()[0]).split("/")[4]
        announced = MdnsDiscovery(host, ["127.0.0.1"], Finds()).announced_addrs()
        assert announced == [f"/ip4/127.0.0.1/tcp/{port}/p2p/{host.get_id()}"]


def _record(*strings: bytes) -> bytes:
    return b"".join(bytes((len(s),)) + s for s in strings)


PEER = "12D3KooWHDpAymdJ2GHhAYNTuuzu1PfdKDDUvnvQDNNhJ2mA7wim"
OTHER = "12D3KooWFGP3vwyec32M2ovSkaEBcHwWdjeypYaGMdkSxdZ8ttJh"


def test_txt_records_of_go_and_py_libp2p_peers_are_read() -> None:
    go_style = _record(
        f"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{PEER}".encode(),
        f"dnsaddr=/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{PEER}".encode(),
    )
    assert parse_txt(go_style) == (
        PEER,
        ("/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"),
    )
    py_style = _record(
        f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{PEER}".encode(),
        f"dnsaddr2=/ip4/127.0.0.1/tcp/2/p2p/{PEER}".encode(),
    )
    assert parse_txt(py_style) == (PEER, ("/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"))


def test_malformed_txt_strings_are_skipped() -> None:
    text = _record(
        b"garbage",
        b"dnsaddr=/not/a/multiaddr",
        b"dnsaddr=/ip4/127.0.0.1/tcp/9",  # no peer id
        f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{PEER}".encode(),
        f"dnsaddr=/ip4/127.0.0.1/tcp/2/p2p/{OTHER}".encode(),  # another peer: ignored
        b"\xff\xfe",
    )
    assert parse_txt(text) == (PEER, ("/ip4/127.0.0.1/tcp/1",))
    assert parse_txt(b"") == (None, ())
    assert parse_txt(b"\x50truncated") == (None, ())


async def test_two_nodes_link_through_addresses_found_by_mdns() -> None:
    """The way a node uses it: dial what is found (here: only the peer we expect)."""
    async with Node() as a, Node() as b, trio.open_nursery() as nursery:

        def on_peer(peer: str, addrs: tuple[str, ...]) -> None:
            if peer == a.peer_id:  # other processes may run mDNS on loopback too
                nursery.start_soon(b.connect, f"{addrs[0]}/p2p/{peer}")

        await nursery.start(MdnsDiscovery(a.host, ["127.0.0.1"], Finds()).run)
        await nursery.start(MdnsDiscovery(b.host, ["127.0.0.1"], on_peer).run)
        async with a.publish("robot.arm", Foo) as intent, b.subscribe("robot.arm", Foo) as sub:
            with trio.fail_after(DISCOVERY_LIMIT):
                await intent.wait_links(lambda links: len(links) >= 1)
                await intent.send(Foo(text="found you"))
                assert (await sub.receive()).text == "found you"
        nursery.cancel_scope.cancel()
