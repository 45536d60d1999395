"""FIND_NODE flood: Kademlia FIND_NODE requests for random keys, as fast as they are answered.

Several streams of ``/ipfs/kad/1.0.0`` at once, each carrying one request after another
(varint length-prefixed ``Message``, as every libp2p implementation frames them).  ``stat`` is
the number of answers received: a node with a per-peer rate limit answers few of them.
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, main

__all__ = ["STREAMS", "attack"]

#: Streams used at once.
STREAMS = 4
#: Largest answer read, in bytes.
MAX_ANSWER = 1 << 20


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def attack(target: Target, report: Report) -> None:
    """Send FIND_NODE requests on :data:`STREAMS` streams until the time is up."""
    from libp2p.kad_dht.pb.kademlia_pb2 import Message

    from protocols.framing import FrameReader

    async with dndm_session(target) as session:

        async def flood() -> None:
            while True:
                try:
                    stream = await session.open("/ipfs/kad/1.0.0")
                except Exception:
                    report.add("streams_refused")
                    await trio.sleep(0.05)
                    continue
                reader = FrameReader(stream, MAX_ANSWER)
                try:
                    while True:
                        request = Message(type=Message.MessageType.FIND_NODE, key=os.urandom(32))
                        body = request.SerializeToString()
                        await stream.write(_varint(len(body)) + body)
                        report.add("requests")
                        if await reader.read_frame() is None:
                            break
                        report.stat += 1
                except Exception:
                    report.add("streams_broken")
                finally:
                    with contextlib.suppress(Exception):
                        await stream.reset()

        async with trio.open_nursery() as nursery:
            for _ in range(STREAMS):
                nursery.start_soon(flood)


if __name__ == "__main__":
    sys.exit(main("find_node_flood", "answers", attack))
