"""simnet.net and simnet.clock: the emulated network's model, under trio's virtual clock."""

from __future__ import annotations

import math
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from libp2p.abc import INetStream, IRawConnection
from libp2p.custom_types import TProtocol
from libp2p.io.abc import ReadWriteCloser
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.kad_dht import provider_store
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.peerinfo import PeerInfo
from libp2p.transport.exceptions import OpenConnectionError
from multiaddr import Multiaddr

from protocols.errors import ConfigError
from simnet.clock import key_pair_from, libp2p_virtual_time, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.net import EPHEMERAL_PORTS, Nat, NodeClass, SimNetwork, SimNode, SimStream

ECHO = TProtocol("/simnet-test/echo/1.0.0")


def pair_latency(a: str, b: str) -> float:
    """A deterministic one-way latency per unordered pair, 12.5 to 37.5 ms."""
    low, high = sorted((a, b))
    return 0.0125 + (zlib.crc32(f"{low}-{high}".encode()) % 1000) / 1000 * 0.025


class Accepted:
    """A listener handler that keeps the streams it is given (or closes each at its EOF)."""

    def __init__(self, close_at_eof: bool) -> None:
        self.streams: list[ReadWriteCloser] = []
        self.arrived = trio.Event()
        self.close_at_eof = close_at_eof

    async def __call__(self, stream: ReadWriteCloser) -> None:
        if not self.close_at_eof:
            self.streams.append(stream)
            self.arrived.set()
            return
        while await stream.read():
            pass
        await stream.close()


@asynccontextmanager
async def listening(
    net: SimNetwork, node: SimNode, *, close_at_eof: bool = False
) -> AsyncIterator[Accepted]:
    """``node`` listens on its default address; yields what it accepts."""
    accepted = Accepted(close_at_eof)
    async with trio.open_nursery() as nursery:
        listener = net.transport(node).create_listener(accepted)
        listener.background_nursery = nursery
        await listener.listen(Multiaddr(f"/ip4/{node.ip}/tcp/0"))
        assert listener.get_addrs() == (node.listen_addr(),)
        try:
            yield accepted
        finally:
            await listener.close()


async def dial(net: SimNetwork, src: SimNode, dst: SimNode) -> IRawConnection:
    return await net.transport(src).dial(dst.listen_addr())


async def read_exactly(stream: ReadWriteCloser | IRawConnection, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.read(size - len(data))
        assert chunk, "end of stream before all data arrived"
        data += chunk
    return data


async def echo(stream: INetStream) -> None:
    while data := await stream.read(1024):
        await stream.write(data)
    await stream.close()


@pytest.mark.parametrize(("security", "muxer"), [("plaintext", "mplex"), ("noise", "yamux")])
async def test_ping_over_libp2p_reproduces_the_configured_latency(
    autojump_clock: trio.testing.MockClock, security: str, muxer: str
) -> None:
    net = SimNetwork(latency=pair_latency)
    nodes = [net.add_node() for _ in range(3)]
    keys = seeded_random(1, "keys")
    options = SimHostOptions(security=security, muxer=muxer)
    async with (
        running_sim_host(net, nodes[0], key_pair_from(keys), options) as pinger,
        running_sim_host(net, nodes[1], key_pair_from(keys), options) as first,
        running_sim_host(net, nodes[2], key_pair_from(keys), options) as second,
    ):
        for node, host in ((nodes[1], first), (nodes[2], second)):
            host.set_stream_handler(ECHO, echo)
            with trio.fail_after(10):
                await pinger.connect(PeerInfo(host.get_id(), [node.listen_addr()]))
                stream = await pinger.new_stream(host.get_id(), [ECHO])
                for _ in range(5):
                    started = trio.current_time()
                    await stream.write(b"ping")
                    assert await read_exactly(stream, 4) == b"ping"
                    rtt = trio.current_time() - started
                    expected = 2 * pair_latency(nodes[0].ip, node.ip)
                    assert rtt == pytest.approx(expected, rel=0.01)
                await stream.close()
        assert nodes[0].counters.dials_out == 2
        assert nodes[1].counters.dials_in == nodes[2].counters.dials_in == 1


async def test_delivery_is_fifo_and_paced_by_uplink_and_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 100 kB/s uplink, 20 ms latency, 30 % of writes retransmitted: still in order.
    net = SimNetwork(latency=0.02, loss=0.3, seed=3)
    slow = NodeClass(name="slow", uplink=100_000)
    sender, receiver = net.add_node(slow), net.add_node()
    async with listening(net, receiver) as accepted:
        conn = await dial(net, sender, receiver)
        await accepted.arrived.wait()
        far_end = accepted.streams[0]
        chunks = [bytes([i % 256]) * (1 + (i * 37) % 500) for i in range(400)]
        started = trio.current_time()
        for chunk in chunks:
            await conn.write(chunk)
        total = sum(map(len, chunks))
        assert await read_exactly(far_end, total) == b"".join(chunks)
        elapsed = trio.current_time() - started
        # The uplink alone needs total / 100 kB/s; the last byte then travels 20 ms.
        assert elapsed >= total / 100_000 + 0.02 - 1e-9
        assert sender.counters.messages_sent == receiver.counters.messages_received == 400
        assert sender.counters.bytes_sent == receiver.counters.bytes_received == total
        await conn.close()
        await far_end.close()


async def test_dial_costs_one_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(latency=0.03)
    a, b = net.add_node(), net.add_node()
    async with listening(net, b):
        started = trio.current_time()
        conn = await dial(net, a, b)
        assert trio.current_time() - started == pytest.approx(0.06)
        host, port = conn.get_remote_address() or ("", 0)
        assert (host, port) == (b.ip, 4001)
        await conn.close()


async def test_close_reaches_the_other_end_after_the_data(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(latency=0.01)
    a, b = net.add_node(), net.add_node()
    async with listening(net, b) as accepted:
        conn = await dial(net, a, b)
        await accepted.arrived.wait()
        far_end = accepted.streams[0]
        await conn.write(b"last words")
        await conn.close()
        assert await read_exactly(far_end, 10) == b"last words"
        assert await far_end.read() == b""
        assert await far_end.read() == b""  # end of stream stays
        with pytest.raises(ConnectionClosedError):
            await far_end.write(b"to a closed peer")
        assert await conn.read() == b""  # our own closed end reads end of stream
        await far_end.close()
        assert a.connection_count == b.connection_count == 0


async def test_reset_fails_both_ends_the_far_one_a_latency_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(latency=0.05)
    a, b = net.add_node(), net.add_node()
    async with listening(net, b) as accepted:
        await dial(net, a, b)
        await accepted.arrived.wait()
        far_end = accepted.streams[0]
        crashed_at = trio.current_time()
        net.crash(a)
        with pytest.raises(ConnectionClosedError):
            await far_end.read()
        assert trio.current_time() - crashed_at == pytest.approx(0.05)
        with pytest.raises(ConnectionClosedError):
            await far_end.write(b"anyone?")
        assert a.connection_count == b.connection_count == 0
        # A crashed node cannot be dialled; after a restart it can again.
        with pytest.raises(OpenConnectionError):
            await dial(net, b, a)
        net.restart(a)
        conn = await dial(net, a, b)
        await conn.close()


async def test_partition_black_holes_bytes_and_fails_dials_until_healed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(latency=0.01, dial_fail_delay=4.0)
    a, b, c = net.add_node(), net.add_node(), net.add_node()
    async with listening(net, b) as accepted:
        conn = await dial(net, a, b)
        await accepted.arrived.wait()
        far_end = accepted.streams[0]
        net.partition([a], [b, c])
        assert not net.reachable(a, b)
        assert net.reachable(b, c)
        await conn.write(b"held")
        with trio.move_on_after(30) as waited:
            await far_end.read()
        assert waited.cancelled_caught, "bytes crossed a partition"
        started = trio.current_time()
        with pytest.raises(OpenConnectionError):
            await dial(net, a, b)
        assert trio.current_time() - started == pytest.approx(4.0)
        assert a.counters.dials_failed == 1
        # c is on b's side: it gets through.
        (await dial(net, c, b)).get_remote_address()

        net.heal()
        await conn.write(b" then more")
        assert await read_exactly(far_end, 14) == b"held then more"
        second = await dial(net, a, b)
        await second.close()
        await conn.close()


async def test_cone_nat_node_is_dialable_only_by_peers_it_dialled_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(latency=0.01, dial_fail_delay=2.0)
    public = net.add_node()
    cone = net.add_node(NodeClass(name="home", nat=Nat.CONE))
    symmetric = net.add_node(NodeClass(name="mobile", nat=Nat.SYMMETRIC))
    async with listening(net, public), listening(net, cone), listening(net, symmetric):
        with pytest.raises(OpenConnectionError):
            await dial(net, public, cone)
        outbound = await dial(net, cone, public)
        inbound = await dial(net, public, cone)
        # Symmetric NAT: not even the peers it dialled can dial back.
        await (await dial(net, symmetric, public)).close()
        with pytest.raises(OpenConnectionError):
            await dial(net, public, symmetric)
        for conn in (outbound, inbound):
            await conn.close()


def test_seventy_thousand_addresses_are_valid_private_multiaddrs() -> None:
    net = SimNetwork(hosts_per_subnet=16)
    subnets = set()
    for index in range(70_000):
        ip = net.address_of(index)
        Multiaddr(f"/ip4/{ip}/tcp/4001")
        assert ip.startswith("10.")
        subnets.add(ip.rsplit(".", 1)[0])
    assert len(subnets) == math.ceil(70_000 / 16)
    with pytest.raises(ConfigError):
        SimNetwork(subnet="10.0.0.0/30").address_of(4)


@pytest.mark.slow
async def test_seventy_thousand_dials_get_valid_ports_that_skip_busy_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(latency=0.0)
    client, server = net.add_node(), net.add_node()
    kept_open: dict[int, IRawConnection] = {}
    async with listening(net, server, close_at_eof=True):
        for i in range(70_000):
            conn = await dial(net, client, server)
            assert isinstance(conn, RawConnection)
            assert isinstance(conn.stream, SimStream)
            ip, port = conn.stream.get_local_address()
            assert ip == client.ip
            assert port in EPHEMERAL_PORTS
            assert port not in kept_open, "a port in use was handed out again"
            if i % 100 == 0:
                Multiaddr(f"/ip4/{client.ip}/tcp/{port}")
                kept_open[port] = conn  # stays open while the counter wraps past it
            else:
                await conn.close()
        for conn in kept_open.values():
            await conn.close()
    assert len(kept_open) == 700
    assert client.counters.dials_out == 70_000


async def test_libp2p_wall_clock_reads_follow_virtual_time_and_are_restored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    real_time = provider_store.time
    with libp2p_virtual_time(epoch=1_000_000.0) as epoch:
        assert epoch == 1_000_000.0
        before = provider_store.time.time()
        await trio.sleep(48 * 3600)
        assert provider_store.time.time() - before == pytest.approx(48 * 3600)
        assert provider_store.time.time() == pytest.approx(epoch + trio.current_time())
    assert provider_store.time is real_time
    with pytest.raises(KeyError), libp2p_virtual_time():  # noqa: PT012 (raised inside the patch)
        assert provider_store.time is not real_time
        raise KeyError("restored even after an error")
    assert provider_store.time is real_time


def test_seeded_random_streams_are_reproducible_and_independent() -> None:
    assert seeded_random(5, "keys").random() == seeded_random(5, "keys").random()
    assert seeded_random(5, "keys").random() != seeded_random(5, "latency").random()
    assert seeded_random(5, "keys").random() != seeded_random(6, "keys").random()
    first = key_pair_from(seeded_random(5, "keys")).public_key.to_bytes()
    assert first == key_pair_from(seeded_random(5, "keys")).public_key.to_bytes()
