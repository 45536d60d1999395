"""Best-effort endings of libp2p streams that may already be broken or reset.

Each helper does its one thing if it still can and is silent otherwise: py-libp2p raises
assorted errors for a stream that is already gone, and none of them matters at that point.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from dndm_p2p.errors import ConnectionLost, DndmError
from protocols.framing import FrameReader, FrameWriter

if TYPE_CHECKING:
    from libp2p.abc import INetStream

__all__ = [
    "close_quietly",
    "drain_quietly",
    "end_stream_quietly",
    "reset_quietly",
    "write_quietly",
]


async def write_quietly(writer: FrameWriter, body: bytes) -> None:
    """Best-effort last words on a stream that may already be broken."""
    try:
        await writer.write_frames([body])
    except ConnectionLost:
        return


async def drain_quietly(reader: FrameReader) -> None:
    """Read and discard frames until the peer closes its side (or the stream fails)."""
    with contextlib.suppress(DndmError):
        while await reader.read_frame() is not None:
            pass


async def reset_quietly(stream: INetStream) -> None:
    """Reset a stream we refuse; py-libp2p raises if it is already gone."""
    try:
        await stream.reset()
    except Exception:
        return


async def close_quietly(stream: INetStream) -> None:
    """Close a stream that may already be reset; py-libp2p raises for those."""
    try:
        await stream.close()
    except Exception:
        return


async def end_stream_quietly(stream: INetStream, writer: FrameWriter) -> None:
    """End a framed stream: close it, or reset it if ``writer`` was cut inside a frame.

    A write that failed or was cancelled may have sent part of a frame; closing would let the
    peer read that as a malformed frame, a reset tells it the stream broke.
    """
    if writer.broken:
        await reset_quietly(stream)
    else:
        await close_quietly(stream)
