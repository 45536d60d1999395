"""The README's quick start: one intent, one pattern interest, one message."""

import trio

from dndm_p2p import Router
from dndm_p2p.proto.demo_pb2 import Temperature


async def main() -> float:
    """Publish one temperature and return what the pattern subscriber received."""
    async with (
        Router() as router,
        router.subscribe("robot.*.temp", Temperature) as temps,
        router.publish("robot.arm.temp", Temperature) as arm,
    ):
        await arm.wait_interest()
        await arm.send(Temperature(celsius=21.5))
        msg = await temps.receive()
        print(msg.celsius)
        return msg.celsius


if __name__ == "__main__":
    trio.run(main)
