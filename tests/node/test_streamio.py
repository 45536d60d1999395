"""A data link's reading side (dndm_p2p.node.streamio): frames, end of stream, reset.
127.0.0.1 only.
"""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol

from dndm_p2p.errors import ConnectionLost
from dndm_p2p.host.build import connect, listen_addrs, running_host
from dndm_p2p.host.identity import generate_identity
from dndm_p2p.node.streamio import MuxedIO, data_stream
from protocols.framing import FrameReader, FrameWriter

PROTO = TProtocol("/dndm-test/streamio/1.0.0")


@pytest.mark.parametrize("ending", ["close", "reset"])
async def test_frames_arrive_whole_and_the_end_of_the_stream_is_reported(ending: str) -> None:
    big = os.urandom(600_000)  # more than yamux's initial 256 KiB window: needs window updates
    small = [b"x" * n for n in (0, 1, 127, 128, 5000)]
    handled = trio.Event()
    all_data = trio.Event()
    seen: list[object] = []

    async def handler(stream: INetStream) -> None:
        reader = FrameReader(data_stream(stream), 1 << 20)
        try:
            while (body := await reader.read_frame()) is not None:
                seen.append(body)
                if len(seen) == len(small) + 1:
                    all_data.set()
            seen.append("eof")
        except ConnectionLost:
            seen.append("lost")
        finally:
            handled.set()

    with trio.fail_after(30):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            a.set_stream_handler(PROTO, handler)
            peer = await connect(b, listen_addrs(a)[0])
            stream = await b.new_stream(peer, [PROTO])
            writer = FrameWriter(data_stream(stream), 1 << 20)
            await writer.write_frames(small)
            await writer.write_frames([big])
            # Wait until everything arrived before ending, so a reset cannot overtake data.
            await all_data.wait()
            if ending == "close":
                await stream.close()
            else:
                await stream.reset()
            await handled.wait()
    assert seen[: len(small)] == small
    assert seen[len(small)] == big
    assert seen[len(small) + 1 :] == (["eof"] if ending == "close" else ["lost"])


async def test_yamux_streams_are_read_from_the_muxer_and_others_as_they_are() -> None:
    received = trio.Event()
    kinds: list[type] = []

    async def handler(stream: INetStream) -> None:
        kinds.append(type(data_stream(stream)))
        received.set()

    class Plain:
        async def read(self, n: int | None = None) -> bytes:
            return b""

        async def write(self, data: bytes) -> None:
            return None

    with trio.fail_after(30):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            a.set_stream_handler(PROTO, handler)
            peer = await connect(b, listen_addrs(a)[0])
            stream = await b.new_stream(peer, [PROTO])
            await stream.write(b"\x00")
            await received.wait()
            await stream.close()
    assert kinds == [MuxedIO]
    plain = Plain()
    assert data_stream(plain) is plain  # type: ignore[arg-type]


async def test_writing_to_a_stream_the_peer_reset_is_a_lost_connection() -> None:
    reset_done = trio.Event()

    async def handler(stream: INetStream) -> None:
        await stream.read(1)
        await stream.reset()
        reset_done.set()

    with trio.fail_after(30):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            a.set_stream_handler(PROTO, handler)
            peer = await connect(b, listen_addrs(a)[0])
            stream = await b.new_stream(peer, [PROTO])
            writer = FrameWriter(data_stream(stream), 1 << 20)
            await writer.write_frames([b"hello"])
            await reset_done.wait()
            # The reset reaches this side soon after; until then writes still succeed.
            with pytest.raises(ConnectionLost):
                await _write_until_broken(writer)
            assert writer.broken


async def _write_until_broken(writer: FrameWriter) -> None:
    for _ in range(500):
        await writer.write_frames([b"more"])
        await trio.sleep(0.01)


async def test_cancelled_reads_lose_no_data_and_no_window_credit() -> None:
    """A reader cancelled again and again (as a link whose reader races a writer is) still gets
    every frame, in order, and the sender is never starved of window (more than yamux's
    256 KiB initial window goes through)."""
    frames = [bytes([i % 256]) * 3000 for i in range(400)]  # 1.2 MB
    received: list[bytes] = []
    done = trio.Event()

    async def handler(stream: INetStream) -> None:
        reader = FrameReader(data_stream(stream), 1 << 20)
        while len(received) < len(frames):
            with trio.CancelScope() as cancelled:
                cancelled.cancel()  # pending before the read: lands at its first checkpoint
                received.extend(await reader.read_frames())
            with trio.move_on_after(0.001):
                received.extend(await reader.read_frames())
        done.set()

    with trio.fail_after(30):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            a.set_stream_handler(PROTO, handler)
            peer = await connect(b, listen_addrs(a)[0])
            stream = await b.new_stream(peer, [PROTO])
            writer = FrameWriter(data_stream(stream), 1 << 20)
            for start in range(0, len(frames), 10):
                await writer.write_frames(frames[start : start + 10])
            await done.wait()
            await stream.close()
    assert received == frames
