"""The demo: a small robot's message bus in one process, with no configuration.

Two temperature sensors publish on ``robot.<part>.temp``; a controller subscribes to one of them
by its exact route, a logger to all of them with the pattern ``robot.*.temp``; a drive publishes
``Twist`` commands on the same path as a temperature to show that two types on one path are two
routes.  Each producer idles until somebody listens (``wait_interest``), and every step is printed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from .intent import Intent
from .interest import Interest
from .links import LinkEventKind
from .proto.demo_pb2 import Temperature, Twist
from .router import Router

__all__ = ["run_demo"]


async def _sensor(intent: Intent[Temperature], part: str, count: int, period: float) -> None:
    links = await intent.wait_interest()
    print(f"[{part} sensor] {len(links)} listener(s) linked; starting to publish")
    for seq in range(1, count + 1):
        celsius = 20.0 + 5.0 * math.sin(seq / 3.0) + (2.0 if part == "leg" else 0.0)
        await intent.send(Temperature(celsius=round(celsius, 2), seq=seq, sensor=part))
        await trio.sleep(period)


async def _print_links(intent: Intent[Temperature], part: str) -> None:
    async for event in intent.links():
        verb = "linked to" if event.kind is LinkEventKind.LINKED else "unlinked from"
        print(f"[{part} sensor] {verb} interest #{event.link.handle_id} ({event.link.route})")


async def _consume(
    name: str, interest: Interest[Temperature], count: int, say: Callable[[str], None]
) -> None:
    for _ in range(count):
        msg = await interest.receive()
        say(f"[{name}] {msg.sensor}: {msg.celsius:.2f} °C (seq {msg.seq})")


async def run_demo(count: int = 5, period: float = 0.05) -> dict[str, int]:
    """Run the in-process demo and return how many messages each consumer received."""
    received: dict[str, int] = {"controller": 0, "logger": 0, "drive-listener": 0}

    def counted(name: str) -> Callable[[str], None]:
        def say(line: str) -> None:
            received[name] += 1
            print(line)

        return say

    async with Router(name="demo") as router:
        arm = router.publish("robot.arm.temp", Temperature)
        leg = router.publish("robot.leg.temp", Temperature)
        drive = router.publish("robot.arm.temp", Twist)
        print(f"declared intents: {arm.route}, {leg.route}, {drive.route}")
        async with arm, leg, drive, trio.open_nursery() as nursery:
            nursery.start_soon(_print_links, arm, "arm")
            nursery.start_soon(_sensor, arm, "arm", count, period)
            nursery.start_soon(_sensor, leg, "leg", count, period)
            await trio.sleep(period)  # nobody listens yet: the sensors idle
            async with (
                router.subscribe("robot.arm.temp", Temperature) as controller,
                router.subscribe("robot.*.temp", Temperature) as logger,
                router.subscribe("robot.arm.temp", Twist, depth=8) as commands,
            ):
                print(f"controller #{controller.handle_id} subscribed to {controller.route}")
                print(f"logger #{logger.handle_id} subscribed to pattern {logger.pattern}")
                await drive.send(Twist(linear=0.5, angular=0.1))
                twist = await commands.receive()
                received["drive-listener"] += 1
                print(f"[drive-listener] twist linear={twist.linear} angular={twist.angular}")
                async with trio.open_nursery() as consumers:
                    consumers.start_soon(
                        _consume, "controller", controller, count, counted("controller")
                    )
                    consumers.start_soon(_consume, "logger", logger, 2 * count, counted("logger"))
            nursery.cancel_scope.cancel()
    print(f"done: {received}")
    return received
