"""protocols.libp2p_fixes.mplex: py-libp2p's mplex stream blocks writes while a task reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import PeerInfo
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream

from protocols.libp2p_fixes.mplex import is_duplex
from simnet.clock import key_pair_from, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.net import SimNetwork

DUPLEX = TProtocol("/simnet-test/duplex/1.0.0")


def use_stock_mplex(host: IHost) -> None:
    """Make ``host`` negotiate py-libp2p's own ``Mplex`` (simnet hosts use the fixed one)."""
    swarm = host.get_network()
    assert isinstance(swarm, Swarm)
    swarm.upgrader.muxer_multistream.add_transport(TProtocol(MPLEX_PROTOCOL_ID), Mplex)


@asynccontextmanager
async def duplex_stream(
    *, stock: bool = False
) -> AsyncIterator[tuple[INetStream, list[bytes], trio.Event]]:
    """An mplex stream to a peer that keeps what it receives (and never writes); with
    ``stock``, both hosts use py-libp2p's own mplex."""
    net = SimNetwork(latency=0.01)
    nodes = [net.add_node(), net.add_node()]
    keys = seeded_random(3, "keys")
    options = SimHostOptions(security="plaintext", muxer="mplex")
    received: list[bytes] = []
    got = trio.Event()

    async def keep(stream: INetStream) -> None:
        while data := await stream.read(1024):
            received.append(data)
            got.set()

    async with (
        running_sim_host(net, nodes[0], key_pair_from(keys)) as dialer,
        running_sim_host(net, nodes[1], key_pair_from(keys), options) as listener,
    ):
        if stock:
            use_stock_mplex(dialer)
            use_stock_mplex(listener)
        listener.set_stream_handler(DUPLEX, keep)
        with trio.fail_after(10):
            await dialer.connect(PeerInfo(listener.get_id(), [nodes[1].listen_addr()]))
            stream = await dialer.new_stream(listener.get_id(), [DUPLEX])
        assert isinstance(stream.muxed_stream, MplexStream)
        yield stream, received, got
        await stream.reset()


async def write_while_reading(stream: INetStream) -> bool:
    """Park a reader on ``stream``, then write: True when the write completes in 5 s."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.read, 1024)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(5):
            await stream.write(b"hello")
            nursery.cancel_scope.cancel()
            return True
        nursery.cancel_scope.cancel()
        return False


async def test_stock_mplex_write_waits_for_a_parked_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with duplex_stream(stock=True) as (stream, received, _):
        assert isinstance(stream.muxed_stream, MplexStream)
        assert not is_duplex(stream.muxed_stream)
        assert not await write_while_reading(stream), "py-libp2p fixed it: drop DuplexMplex"
        assert received == []


async def test_fixed_mplex_is_full_duplex(autojump_clock: trio.testing.MockClock) -> None:
    async with duplex_stream() as (stream, received, got):
        assert isinstance(stream.muxed_stream, MplexStream)
        assert is_duplex(stream.muxed_stream)
        assert await write_while_reading(stream)
        with trio.fail_after(5):
            await got.wait()
        assert received == [b"hello"]
