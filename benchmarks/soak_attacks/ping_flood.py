"""Ping flood: Pings with 200 KB payloads on our control stream; the Pongs are never read.

Each Pong echoes its Ping's payload, so a node that queues its outgoing control frames without
a bound holds every Pong it cannot write.  Stops when ``--budget-mb`` of payload was sent.
"""

from __future__ import annotations

import sys

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, main

__all__ = ["PAYLOAD", "attack"]

#: Payload of each Ping, in bytes (under the 256 KiB control frame limit).
PAYLOAD = 200_000


async def attack(target: Target, report: Report) -> None:
    """Flood the victim with big Pings over one session whose inbound stream is never read."""
    from protocols.v1 import control_pb2, ping_pb2

    payload = bytes(PAYLOAD)
    async with dndm_session(target, read_control=False) as session:
        nonce = 0
        while nonce * PAYLOAD < target.budget_bytes:
            nonce += 1
            frame = control_pb2.ControlFrame(
                ping=ping_pb2.Ping(nonce=nonce, sent_us=1, payload=payload)
            )
            await session.send(session.control, frame)
            report.stat = nonce
        report.details["budget_reached"] = True


if __name__ == "__main__":
    sys.exit(main("ping_flood", "pings", attack))
