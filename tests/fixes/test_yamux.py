"""protocols.libp2p_fixes.yamux: py-libp2p's yamux buffers DATA past the receive window it granted.

A sender that ignores its send window (here: a py-libp2p host whose stream's ``send_window`` is
raised by hand, as any hostile implementation can) writes 20 MiB (more than the largest window,
16 MiB) on a stream the receiver never reads.  A second stream's message, read by the
receiver, tells that every frame before it was processed (yamux handles one connection's frames
in order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux.yamux import MAX_WINDOW_SIZE, Yamux, YamuxStream
from multiaddr import Multiaddr

from dndm_p2p.host.build import DEFAULT_LISTEN_ADDR, connect, running_host
from dndm_p2p.host.identity import generate_identity
from protocols.libp2p_fixes.host import close_host
from protocols.libp2p_fixes.yamux import is_windowed

UNREAD = TProtocol("/test/unread/1.0.0")
MARKER = TProtocol("/test/marker/1.0.0")
FLOOD = MAX_WINDOW_SIZE + 4 * 1024 * 1024


@asynccontextmanager
async def _receiver(*, stock: bool) -> AsyncIterator[IHost]:
    if stock:
        host = new_host(key_pair=generate_identity())
        async with host.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
            try:
                yield host
            finally:
                await close_host(host, grace=5)
    else:
        async with running_host(generate_identity()) as host:
            yield host


async def _buffered_after_flood(*, stock: bool) -> tuple[int, object]:
    """Bytes the receiver buffers for a stream it never reads after the flood; and its
    muxer."""
    unread: list[INetStream] = []
    marker_read = trio.Event()

    async def keep_unread(stream: INetStream) -> None:
        unread.append(stream)
        await trio.sleep_forever()

    async def read_marker(stream: INetStream) -> None:
        await stream.read(1)
        marker_read.set()

    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            receiver = await stack.enter_async_context(_receiver(stock=stock))
            receiver.set_stream_handler(UNREAD, keep_unread)
            receiver.set_stream_handler(MARKER, read_marker)
            sender = await stack.enter_async_context(running_host(generate_identity()))
            addr = f"{receiver.get_addrs()[0]}"
            await connect(sender, addr)
            stream = await sender.new_stream(receiver.get_id(), [UNREAD])
            muxed = stream.muxed_stream
            assert isinstance(muxed, YamuxStream)
            muxed.send_window = 1 << 40  # ignore the window the receiver granted
            chunk = b"x" * 65536
            for _ in range(FLOOD // len(chunk)):
                await muxed.write(chunk)
            marker = await sender.new_stream(receiver.get_id(), [MARKER])
            await marker.write(b"!")
            await marker_read.wait()
            conn = receiver.get_network().get_connections(sender.get_id())[0]
            muxer = conn.muxed_conn
            assert isinstance(muxer, Yamux)
            assert unread, "the receiver never saw the flooded stream"
            victim = unread[0].muxed_stream
            assert isinstance(victim, YamuxStream)
            buffered = len(muxer.stream_buffers.get(victim.stream_id, b""))
            await marker.close()
            return buffered, muxer


async def test_stock_yamux_buffers_past_the_receive_window() -> None:
    buffered, muxer = await _buffered_after_flood(stock=True)
    assert not is_windowed(muxer)
    assert buffered == FLOOD  # past any window it can have granted


async def test_windowed_yamux_keeps_no_more_than_the_window() -> None:
    buffered, muxer = await _buffered_after_flood(stock=False)
    assert is_windowed(muxer)
    assert buffered <= MAX_WINDOW_SIZE  # at most what it granted
    assert getattr(muxer, "window_violations", 0) >= 1
