"""simnet.mplex_fix: py-libp2p's mplex stream blocks writes while a task reads it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream

from simnet.clock import key_pair_from, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.mplex_fix import mplex_duplex_fix, mplex_duplex_fix_installed
from simnet.net import SimNetwork

DUPLEX = TProtocol("/simnet-test/duplex/1.0.0")


@asynccontextmanager
async def duplex_stream() -> AsyncIterator[tuple[INetStream, list[bytes], trio.Event]]:
    """An mplex stream to a peer that keeps what it receives (and never writes)."""
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
    assert not mplex_duplex_fix_installed()
    async with duplex_stream() as (stream, received, _):
        assert not await write_while_reading(stream), "py-libp2p fixed it: drop simnet.mplex_fix"
        assert received == []


async def test_fixed_mplex_is_full_duplex(autojump_clock: trio.testing.MockClock) -> None:
    with mplex_duplex_fix():
        assert mplex_duplex_fix_installed()
        async with duplex_stream() as (stream, received, got):
            assert await write_while_reading(stream)
            with trio.fail_after(5):
                await got.wait()
            assert received == [b"hello"]
    assert not mplex_duplex_fix_installed()
