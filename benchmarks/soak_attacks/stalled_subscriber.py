"""A subscriber that freezes its publisher: reliable, ``block``, credit 1, and never an Ack.

It subscribes to the victim's route with the QoS of the most demanding legitimate subscriber
(reliable, overflow ``block``, depth 1), opens the link with an initial credit of 1, reads what
the victim sends (so nothing stalls in yamux) and never acknowledges or grants credit.  A
publisher that lets the subscriber choose its queue policy then waits in ``send()``, for every
subscriber of the route.
"""

from __future__ import annotations

import sys

from benchmarks.soak_attacks.peer import Report, Target, dndm_session, interest_advert, main

__all__ = ["attack"]


async def attack(target: Target, report: Report) -> None:
    """Hold one reliable link with credit 1 and read it without acknowledging anything."""
    from protocols.framing import FrameReader, read_message
    from protocols.ids import DATA_PROTOCOL_ID, MAX_FRAME_SIZE
    from protocols.v1 import common_pb2, control_pb2, data_pb2, result_pb2

    advert = interest_advert(target.route, depth=1, block=True, reliable=True)
    async with dndm_session(target, interests=[advert]) as session:
        stream = await session.open(DATA_PROTOCOL_ID)
        opening = control_pb2.DataFrame(
            open=data_pb2.LinkOpen(
                route=target.route,
                link_id=1,
                qos=common_pb2.QoS(depth=1, overflow=common_pb2.QoS.BLOCK, reliable=True),
                initial_credit=1,
            )
        )
        await session.send(stream, opening)
        reader = FrameReader(stream, MAX_FRAME_SIZE)
        while (frame := await read_message(reader, control_pb2.DataFrame)) is not None:
            body = frame.WhichOneof("body")
            if body == "batch":
                report.stat += len(frame.batch.messages)
            else:
                report.add(f"frames_{body}")
            if body == "result":
                code = result_pb2.Result.Code.Name(frame.result.code)
                report.details["result"] = f"{code}: {frame.result.description}"[:200]
        report.details["stream_ended"] = True


if __name__ == "__main__":
    sys.exit(main("stalled_subscriber", "messages", attack))
