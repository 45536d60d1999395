"""The demo: a small robot's message bus on three real nodes, with no configuration.

Three :class:`~dndm_p2p.node.Node` objects run in this process, each with its own libp2p host on
127.0.0.1 and a fresh identity, and connect to each other through the addresses they print:

* **sensors** publishes ``Temperature`` on ``robot.arm.temp`` and ``robot.leg.temp``, and
  ``Twist`` on ``robot.arm.temp`` (the same path with another type: another route);
* **controller** subscribes to the exact route ``Temperature@robot.arm.temp``;
* **logger** subscribes to the pattern ``robot.*.temp`` (every temperature) and to the ``Twist``.

The sensors declare their intents before anyone listens and wait (an intent knows who listens);
each link is printed as it appears, with the peer it leads to; then every sensor publishes
``count`` messages and every consumer prints what it gets, with the latency.
"""

from __future__ import annotations

import math
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.errors import Unavailable
from dndm_p2p.node.node import Node
from dndm_p2p.proto.demo_pb2 import Temperature, Twist

__all__ = ["run_demo"]

#: How long the whole demo may take before it gives up, in seconds.
DEMO_TIMEOUT = 60.0

_WIDTH = len("[controller]")


def _say(who: str, text: str) -> None:
    print(f"{f'[{who}]':<{_WIDTH}}  {text}", flush=True)


def _short(peer: str | None) -> str:
    return "this node" if peer is None else f"…{peer[-6:]}"


def _short_route(route: object) -> str:
    """``Temperature@robot.arm.temp`` for ``dndm.demo.v1.Temperature@robot.arm.temp``."""
    type_name, _, path = str(route).partition("@")
    return f"{type_name.rpartition('.')[2]}@{path}"


class _Demo:
    """The state shared by the demo's tasks."""

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self.names: dict[str, str] = {}
        #: When each message was sent (perf counter, ns), by (stream, number).
        self.sent_at: dict[tuple[str, int], int] = {}
        self.received: dict[str, int] = {"controller": 0, "logger": 0, "logger:twist": 0}

    def who(self, peer: str | None) -> str:
        return f"{self.names.get(peer or '', '?')} ({_short(peer)})"

    def latency(self, stream: str, number: int) -> str:
        sent = self.sent_at.get((stream, number))
        if sent is None:
            return ""
        return f"latency {(time.perf_counter_ns() - sent) / 1000:,.0f} µs"

    def sender(self, interest: Interest[Any]) -> str:
        peers = {link.peer for link in interest.intents}
        return self.names.get(peers.pop() or "", "?") if len(peers) == 1 else "?"

    def linked(self, links: frozenset[LinkInfo]) -> str:
        return " and ".join(sorted({self.who(link.peer) for link in links}))

    async def temperatures(self, intent: Intent[Temperature], part: str, listeners: int) -> None:
        links = await intent.wait_links(lambda links: len(links) >= listeners)
        _say(
            "sensors",
            f"{_short_route(intent.route)} linked to {self.linked(links)}: "
            f"publishing {self.count} readings",
        )
        for seq in range(1, self.count + 1):
            celsius = 20.0 + 5.0 * math.sin(seq / 3.0) + (2.0 if part == "leg" else 0.0)
            self.sent_at[(part, seq)] = time.perf_counter_ns()
            await intent.send(Temperature(celsius=round(celsius, 2), seq=seq, sensor=part))
            await trio.sleep(self.period)

    async def twists(self, intent: Intent[Twist]) -> None:
        links = await intent.wait_interest()
        _say(
            "sensors",
            f"{_short_route(intent.route)} linked to {self.linked(links)}: "
            f"publishing {self.count} commands",
        )
        for number in range(1, self.count + 1):
            self.sent_at[("twist", number)] = time.perf_counter_ns()
            await intent.send(Twist(linear=round(0.1 * number, 2), angular=0.1))
            await trio.sleep(self.period)

    async def show_sources(self, consumer: str, interest: Interest[Any], routes: int) -> None:
        links = await interest.wait_links(lambda links: len(links) >= routes)
        what = f"pattern {interest.pattern}" if interest.pattern is not None else "subscription"
        sources = " and ".join(sorted(_short_route(link.route) for link in links))
        _say(consumer, f"{what} linked to {sources}, published by {self.linked(links)}")

    async def consume_temperatures(
        self, consumer: str, interest: Interest[Temperature], expected: int
    ) -> None:
        while self.received[consumer] < expected:
            msg = await interest.receive()
            self.received[consumer] += 1
            _say(
                consumer,
                f"{msg.sensor:<4} {msg.celsius:6.2f} °C  seq {msg.seq}  from "
                f"{self.sender(interest)}  {self.latency(msg.sensor, msg.seq)}",
            )

    async def consume_twists(self, interest: Interest[Twist]) -> None:
        while self.received["logger:twist"] < self.count:
            msg = await interest.receive()
            self.received["logger:twist"] += 1
            number = self.received["logger:twist"]
            _say(
                "logger",
                f"twist linear {msg.linear:.2f} m/s angular {msg.angular:.2f} rad/s  from "
                f"{self.sender(interest)}  {self.latency('twist', number)}",
            )


async def run_demo(count: int = 5, period: float = 0.05) -> dict[str, int]:
    """Run the three-node demo and return how many messages each consumer received.

    The keys are ``controller`` (arm temperatures), ``logger`` (every temperature, by pattern)
    and ``logger:twist`` (the drive's commands).  Raises :class:`Unavailable` if the messages do
    not all arrive within :data:`DEMO_TIMEOUT` seconds.
    """
    demo = _Demo(count, period)
    print("dndm demo: three nodes on 127.0.0.1, linked by route name and type\n", flush=True)
    async with AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for name in ("sensors", "controller", "logger"):
            node = await stack.enter_async_context(Node(NodeConfig(name=name)))
            nodes[name] = node
            demo.names[node.peer_id] = name
            _say(name, f"listening on {node.addrs[0]}")
        sensors, controller, logger = nodes["sensors"], nodes["controller"], nodes["logger"]
        with trio.fail_after(DEMO_TIMEOUT):
            for node, target in ((controller, sensors), (logger, sensors), (logger, controller)):
                await node.connect(target.addrs[0])
                _say(node.name, f"connected to {demo.who(target.peer_id)}")
        print(flush=True)

        arm = await stack.enter_async_context(sensors.publish("robot.arm.temp", Temperature))
        leg = await stack.enter_async_context(sensors.publish("robot.leg.temp", Temperature))
        drive = await stack.enter_async_context(sensors.publish("robot.arm.temp", Twist))
        for intent in (arm, leg, drive):
            _say("sensors", f"publishes {intent.route}")
        _say("sensors", "nobody listens yet: the sensors wait for subscribers")
        print(flush=True)

        async with (
            controller.subscribe("robot.arm.temp", Temperature) as arm_temps,
            logger.subscribe("robot.*.temp", Temperature) as all_temps,
            logger.subscribe("robot.arm.temp", Twist) as commands,
        ):
            _say("controller", f"subscribes to {arm_temps.route}")
            _say("logger", f"subscribes to the pattern {all_temps.link.route}")
            _say("logger", f"subscribes to {commands.route}")
            print(flush=True)
            try:
                with trio.fail_after(DEMO_TIMEOUT):
                    async with trio.open_nursery() as flow:
                        flow.start_soon(demo.show_sources, "logger", all_temps, 2)
                        flow.start_soon(demo.temperatures, arm, "arm", 2)
                        flow.start_soon(demo.temperatures, leg, "leg", 1)
                        flow.start_soon(demo.twists, drive)
                        flow.start_soon(demo.consume_temperatures, "controller", arm_temps, count)
                        flow.start_soon(demo.consume_temperatures, "logger", all_temps, 2 * count)
                        flow.start_soon(demo.consume_twists, commands)
            except trio.TooSlowError:
                raise Unavailable(
                    f"the demo's messages did not all arrive within {DEMO_TIMEOUT:g} s: "
                    f"{demo.received}"
                ) from None
    print(
        f"\ndone: the controller got {demo.received['controller']} arm temperatures, the logger "
        f"{demo.received['logger']} temperatures (pattern robot.*.temp) and "
        f"{demo.received['logger:twist']} twists",
        flush=True,
    )
    return demo.received
