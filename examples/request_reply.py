"""The README's request/reply example: a call, a stream of replies, a remote error."""

from collections.abc import AsyncIterator

import trio

from dndm_p2p import RemoteError, Router
from dndm_p2p.proto.demo_pb2 import Temperature


def to_fahrenheit(reading: Temperature) -> Temperature:
    """A plain function answers one reply per request."""
    if reading.celsius < -273.15:
        raise ValueError("below absolute zero")
    return Temperature(celsius=reading.celsius * 9 / 5 + 32, sensor=reading.sensor)


async def forecast(now: Temperature) -> AsyncIterator[Temperature]:
    """An async generator answers a stream; the call ends when it returns."""
    for hour in range(1, 4):  # a real handler would await its data here
        yield Temperature(celsius=now.celsius + hour, seq=hour)


async def main() -> list[str]:
    """Ask both services and return what was printed."""
    lines: list[str] = []
    async with (
        Router() as router,  # or a Node: the same calls, across machines
        router.service("units.fahrenheit", Temperature, Temperature, to_fahrenheit),
        router.service("weather.forecast", Temperature, Temperature, forecast),
        router.caller("units.fahrenheit", Temperature, Temperature) as units,
        router.caller("weather.forecast", Temperature, Temperature) as weather,
    ):
        boiling = await units.call(Temperature(celsius=100), timeout=2)
        lines.append(f"100 C is {boiling.celsius:g} F")
        async for hour in weather.stream(Temperature(celsius=20), timeout=2):
            lines.append(f"in {hour.seq} h: {hour.celsius:g} C")
        try:
            await units.call(Temperature(celsius=-300), timeout=2)
        except RemoteError as error:
            lines.append(f"refused: {error.kind}: {error}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    trio.run(main)
