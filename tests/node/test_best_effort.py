"""Ending framed streams: a stream whose writer was cut inside a frame is reset, not closed."""

from __future__ import annotations

from typing import cast

import trio
from libp2p.abc import INetStream

from dndm_p2p.node.best_effort import end_stream_quietly
from protocols.framing import FrameWriter


class RecordingStream:
    """A stream whose writes park (until cancelled) and which records how it was ended."""

    def __init__(self, *, park: bool) -> None:
        self.park = park
        self.ended: list[str] = []

    async def read(self, n: int | None = None) -> bytes:
        return b""

    async def write(self, data: bytes) -> None:
        if self.park:
            await trio.sleep_forever()

    async def close(self) -> None:
        self.ended.append("close")

    async def reset(self) -> None:
        self.ended.append("reset")


async def test_a_stream_whose_write_was_cancelled_is_reset() -> None:
    stream = RecordingStream(park=True)
    writer = FrameWriter(stream)
    with trio.move_on_after(0.01):
        await writer.write_frame(b"x" * 1000)
    assert writer.broken
    await end_stream_quietly(cast(INetStream, stream), writer)
    assert stream.ended == ["reset"]


async def test_a_stream_whose_writes_all_completed_is_closed() -> None:
    stream = RecordingStream(park=False)
    writer = FrameWriter(stream)
    await writer.write_frame(b"x")
    await end_stream_quietly(cast(INetStream, stream), writer)
    assert stream.ended == ["close"]
