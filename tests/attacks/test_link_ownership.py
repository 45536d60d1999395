"""A remote subscriber can never freeze a publisher (the publisher owns its side of a link).

Each test runs the victim (a publisher :class:`Node`) and a legitimate reliable subscriber in
this process, and the attacker in another OS process: a plain py-libp2p host opening a link
that asks for ``block`` and never grants credit, one that asks for a reliable link with a
credit of 1 and never acknowledges, or a real reliable subscriber (``tests/support/mp_peer``)
frozen with SIGSTOP.  The victim publishes at a steady rate; the test measures the legitimate
subscriber's rate before the attack and during it, and the longest ``send()``.  During every
attack the legitimate rate stays at least 80 % of the rate before, no ``send()`` waits past
:data:`SEND_BOUND`, the legitimate link loses nothing, and a counter of the victim moved.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.node.node import Node, NodeEvent
from tests.proto.messages_pb2 import Sample
from tests.support.processes import Cluster, cluster

pytestmark = pytest.mark.skipif(os.name != "posix", reason="uses POSIX signals")

ROUTE = "attack.victim"
#: Messages per second the victim publishes.
RATE = 200.0
#: Seconds measured before the attack (after a warm-up) and during it.
WARM_UP = 0.5
BEFORE = 2.0
DURING = 3.0
#: The longest a send() may take during an attack (the issue measured 29.85 s).
SEND_BOUND = 1.0
#: Bound of every wait for a process or an event.
WAIT = 30.0
ATTACKER = [sys.executable, "-m", "tests.support.attackers.link_ownership"]


@dataclass
class Traffic:
    """The victim's steady publishing and the legitimate subscriber's receiving."""

    out: Intent[Sample]
    legit: Interest[Sample]
    sent: int = 0
    received: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    #: (start, duration) of every send() that returned, and the start of the one running.
    sends: list[tuple[float, float]] = field(default_factory=list)
    sending_since: float | None = None
    #: The victim's events, and a signal set (and replaced) whenever anything above changes.
    events: list[NodeEvent] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def bump(self) -> None:
        """Wake whoever waits for a change."""
        self.changed.set()
        self.changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked after every change)."""
        while not predicate():
            await self.changed.wait()

    async def produce(self) -> None:
        """Send Sample(seq=i) at RATE per second, on a fixed schedule (catching up if late)."""
        start = trio.current_time()
        while True:
            await trio.sleep_until(start + self.sent / RATE)
            began = self.sending_since = trio.current_time()
            await self.out.send(Sample(seq=self.sent))
            self.sending_since = None
            self.sends.append((began, trio.current_time() - began))
            self.sent += 1

    async def consume(self) -> None:
        """Receive on the legitimate subscription, stamping each arrival."""
        while True:
            batch = await self.legit.receive_batch()
            now = trio.current_time()
            self.received.extend(m.seq for m in batch)
            self.arrivals.extend(now for _ in batch)
            self.bump()

    def rate(self, start: float, end: float) -> float:
        """Messages per second the legitimate subscriber received in [start, end)."""
        return sum(1 for t in self.arrivals if start <= t < end) / (end - start)

    def longest_send(self, start: float, end: float) -> float:
        """The longest send() that began in [start, end), counting one still running."""
        longest = max((d for t, d in self.sends if start <= t < end), default=0.0)
        if self.sending_since is not None and self.sending_since < end:
            longest = max(longest, trio.current_time() - max(self.sending_since, start))
        return longest


@asynccontextmanager
async def victim_and_legit(
    config: dict[str, Any], publish: dict[str, Any]
) -> AsyncIterator[tuple[Node, Traffic]]:
    """The victim (with ``config``) publishing ROUTE (with ``publish`` options) to a linked
    legitimate reliable subscriber in this process, the traffic running, and the victim's
    events collected."""
    async with (
        Node(NodeConfig(name="victim", **config)) as victim,
        Node(NodeConfig(name="legit")) as legit,
        victim.publish(ROUTE, Sample, **publish) as out,
        legit.subscribe(ROUTE, Sample, reliable=True, depth=256) as sub,
        victim.events() as events,
        trio.open_nursery() as nursery,
    ):
        traffic = Traffic(out, sub)

        async def collect() -> None:
            async for event in events:
                traffic.events.append(event)
                traffic.bump()

        nursery.start_soon(collect)
        with trio.fail_after(WAIT):
            await legit.connect(victim.addrs[0])
            await out.wait_interest()
        nursery.start_soon(traffic.consume)
        nursery.start_soon(traffic.produce)
        yield victim, traffic
        nursery.cancel_scope.cancel()


async def raw_attacker(group: Cluster, victim: Node, mode: str) -> Callable[[], Awaitable[None]]:
    """Start the hostile host of ``mode``; return what waits until its link is opened."""
    proc = await group.start(
        f"attacker-{mode}",
        [
            *ATTACKER,
            "--target",
            victim.addrs[0],
            "--route",
            f"dndm.test.Sample@{ROUTE}",
            "--mode",
            mode,
        ],
    )

    async def opened() -> None:
        await proc.event("link_opened")

    return opened


async def stopped_subscriber(group: Cluster, victim: Node) -> Callable[[], Awaitable[None]]:
    """Start a real reliable subscriber of ROUTE; return what links it and then SIGSTOPs it."""
    proc, _ = await group.peer("frozen")

    async def freeze() -> None:
        await proc.send(op="connect", addr=victim.addrs[0], keep=False)
        await proc.event("connected")
        await proc.send(op="subscribe", id="s", route=ROUTE, type="Sample", reliable=True, depth=64)
        await proc.wait_values("s", 1)
        os.kill(proc.process.pid, signal.SIGSTOP)

    return freeze


async def measure(
    name: str,
    start_attack: Callable[[Cluster, Node], Awaitable[Callable[[], Awaitable[None]]]],
    counter: Callable[[Node], int],
    config: dict[str, Any] | None = None,
    **publish: Any,
) -> tuple[Traffic, dict[str, float]]:
    """Run one attack on a victim with ``config``; return the traffic and the figures
    measured, once ``counter`` of the victim moved (bounded)."""
    async with (
        cluster() as group,
        victim_and_legit(config or {}, publish) as (victim, traffic),
    ):
        started = trio.current_time()
        await trio.sleep(WARM_UP + BEFORE)
        before = traffic.rate(started + WARM_UP, started + WARM_UP + BEFORE)
        with trio.fail_after(WAIT):
            attack = await start_attack(group, victim)
            await attack()
            await traffic.out.wait_links(lambda links: len(links) >= 2)
        attacked = trio.current_time()
        await trio.sleep(DURING)
        figures = {
            "rate_before": before,
            "rate_during": traffic.rate(attacked, attacked + DURING),
            "longest_send_during": traffic.longest_send(attacked, attacked + DURING),
        }
        print(json.dumps({"attack": name, **figures}))
        # Everything sent so far reaches the legitimate (reliable) subscriber, once, in order.
        sent = traffic.sent
        with trio.fail_after(WAIT):
            await traffic.wait_until(lambda: len(traffic.received) >= sent)
            await traffic.wait_until(lambda: counter(victim) > 0)
        return traffic, figures


def assert_unharmed(traffic: Traffic, figures: dict[str, float]) -> None:
    """The legitimate link kept its rate and lost nothing; no send() waited past the bound."""
    assert figures["rate_during"] >= 0.8 * figures["rate_before"], figures
    assert figures["longest_send_during"] < SEND_BOUND, figures
    assert traffic.received == list(range(len(traffic.received)))


def evictions(traffic: Traffic) -> int:
    """How many ``subscriber_evicted`` events the victim emitted."""
    return sum(1 for event in traffic.events if event.kind == "subscriber_evicted")


async def test_a_subscriber_asking_for_block_never_holds_the_publisher_back() -> None:
    async def attack(group: Cluster, victim: Node) -> Callable[[], Awaitable[None]]:
        return await raw_attacker(group, victim, "block")

    # A small queue for each remote link, so that the attacker's fills within the test.
    traffic, figures = await measure(
        "block", attack, lambda v: v.slow_subscribers.dropped, {"link_queue_depth": 128}
    )
    assert_unharmed(traffic, figures)


async def test_a_subscriber_asking_for_block_is_evicted_under_the_evict_policy() -> None:
    async def attack(group: Cluster, victim: Node) -> Callable[[], Awaitable[None]]:
        return await raw_attacker(group, victim, "block")

    traffic, figures = await measure(
        "block-evict",
        attack,
        lambda v: v.slow_subscribers.evicted,
        slow_subscriber="evict",
        evict_after=1.0,
    )
    assert_unharmed(traffic, figures)
    assert evictions(traffic) == 1


async def test_a_reliable_subscriber_that_never_acks_is_given_up() -> None:
    async def attack(group: Cluster, victim: Node) -> Callable[[], Awaitable[None]]:
        return await raw_attacker(group, victim, "reliable")

    traffic, figures = await measure(
        "reliable-credit-1",
        attack,
        lambda v: v.slow_subscribers.reliable_given_up,
        slow_subscriber="evict",
        evict_after=1.0,
    )
    assert_unharmed(traffic, figures)
    assert evictions(traffic) == 1


async def test_a_sigstopped_reliable_subscriber_never_stalls_the_others() -> None:
    traffic, figures = await measure(
        "sigstop-reliable",
        stopped_subscriber,
        lambda v: v.slow_subscribers.reliable_given_up,
        slow_subscriber="evict",
        evict_after=1.0,
    )
    assert_unharmed(traffic, figures)
    assert evictions(traffic) == 1
