"""The README's asyncio example: the quick start under ``asyncio.run``."""

import asyncio

from dndm_p2p import aio
from dndm_p2p.proto.demo_pb2 import Temperature


async def main() -> float:
    """Publish one temperature and return what the pattern subscriber received."""
    async with (
        aio.Router() as router,
        router.subscribe("robot.*.temp", Temperature) as temps,  # aio.Interest[Temperature]
        router.publish("robot.arm.temp", Temperature) as arm,  # aio.Intent[Temperature]
    ):
        await arm.wait_interest()
        await arm.send(Temperature(celsius=21.5))
        msg = await temps.receive()
        print(msg.celsius)
        return msg.celsius


if __name__ == "__main__":
    asyncio.run(main())
