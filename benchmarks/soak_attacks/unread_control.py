"""A control stream the victim opened and never reads: we write into it without end.

Each side of a DNDM session writes only on the control stream it opened, so the victim never
reads the one it opened to us; whatever we write on it stays in the victim's yamux buffers,
unless its yamux keeps to the stream's receive window.  Writes 64 KiB chunks until
``--budget-mb`` is written; a write that waits (the window is respected) is counted.
"""

from __future__ import annotations

import sys

import trio

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, main

__all__ = ["CHUNK", "attack"]

#: Bytes per write.
CHUNK = 64 * 1024
#: A write taking longer than this counts as blocked by flow control.
BLOCKED = 2.0


async def attack(target: Target, report: Report) -> None:
    """Fill the victim's unread control stream with junk."""
    chunk = bytes(CHUNK)
    async with dndm_session(target, read_control=False) as session:
        with trio.fail_after(10.0):
            stream = await session.victim_control.receive()
        written = 0
        while written < target.budget_bytes:
            with trio.move_on_after(BLOCKED) as waited:
                await stream.write(chunk)
                written += CHUNK
                report.stat = written / 1e6
            if waited.cancelled_caught:
                report.add("writes_blocked")
                await trio.sleep(0.1)
        report.details["budget_reached"] = True
        await trio.sleep_forever()


if __name__ == "__main__":
    sys.exit(main("unread_control", "MB", attack))
