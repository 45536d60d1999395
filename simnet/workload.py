"""The workload's traffic: who publishes and subscribes to what, and who should get each message.

:class:`Traffic` names the routes (``ns<k>.route<i>.data``) and patterns (``ns<k>.*.data``)
of a run, gives the regular nodes their roles (publishers and subscribers of each route,
subscribers of each pattern), and runs a node's publishers and subscribers.  It logs
``subscribe``, ``link`` (the subscription found a publisher), ``deliver`` and ``unsubscribe``
events, and a ``publish`` event per message with the subscriptions expected to receive it
(``exp``: those alive when it is sent) and those already linked to its publisher (``lk``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import trio

from dndm_p2p.core.intent import Intent
from protocols.v1 import ping_pb2
from simnet.metrics import EventLog
from simnet.scenario import WorkloadSpec
from simnet.slot import NodeSlot

__all__ = ["Traffic", "matches", "sub_route"]


class Traffic:
    """The routes, roles and live subscriptions of one run's workload."""

    def __init__(self, spec: WorkloadSpec, log: EventLog) -> None:
        self.spec = spec
        self.log = log
        self.routes: list[str] = []
        self.patterns: list[str] = []
        #: Live subscription ids (``<route or pattern>|<n>``) per route or pattern.
        self.subs_of_route: dict[str, set[str]] = defaultdict(set)
        #: The slot of every subscription id ever made.
        self.sub_slot: dict[str, NodeSlot] = {}
        self._msg_ids = itertools.count(1)
        self._sub_ids = itertools.count(1)

    def assign_roles(self, slots: list[NodeSlot], nodes: int, rng: Any) -> None:
        """Name the routes and patterns of a run of ``nodes`` nodes; pick their publishers and
        subscribers among the non-bootstrap ``slots`` with ``rng``."""
        work = self.spec
        regular = [s for s in slots if not s.boot]
        count = work.route_count(nodes)
        spaces = work.namespace_count(count)
        self.routes = [f"ns{i % spaces}.route{i}.data" for i in range(count)]
        self.patterns = [f"ns{k}.*.data" for k in range(min(spaces, count))]
        for route in self.routes:
            publishers = rng.sample(regular, work.publishers)
            others = [s for s in regular if s not in publishers]
            for slot in publishers:
                slot.publishes.append(self.routes.index(route))
            for slot in rng.sample(others, min(work.subscribers, len(others))):
                slot.subscribes.append(route)
        for pattern in self.patterns:
            for slot in rng.sample(regular, work.pattern_subscribers):
                slot.subscribes.append(pattern)

    async def publisher(
        self, slot: NodeSlot, route_index: int, delay: float, phase: float, end_at: float
    ) -> None:
        """Publish on one route at the workload's rate, from ``delay`` seconds from now (plus
        ``phase`` of a period) until ``drain`` seconds before ``end_at``; then hold the intent."""
        await trio.sleep(delay)
        node = slot.node
        if node is None:
            return
        work = self.spec
        route = self.routes[route_index]
        payload = b"\x00" * work.size
        period = 1 / work.rate
        stop = end_at - work.drain
        async with node.publish(route, ping_pb2.Ping) as intent:
            await trio.sleep(period * phase)
            while trio.current_time() < stop:
                await self._publish_one(slot, intent, route, payload)
                await trio.sleep(period)
            await trio.sleep_forever()

    async def _publish_one(
        self, slot: NodeSlot, intent: Intent[ping_pb2.Ping], route: str, payload: bytes
    ) -> None:
        msg = next(self._msg_ids)
        expected = sorted(self.subs_of_route[route])
        for pattern in self.patterns:
            if matches(pattern, route):
                expected.extend(sorted(self.subs_of_route[pattern]))
        linked_peers = {info.peer for info in intent.interests if info.peer is not None}
        linked = [
            sub
            for sub in expected
            if (owner := self.sub_slot.get(sub)) is not None and owner.peer in linked_peers
        ]
        self.log.emit("publish", msg=msg, node=slot.index, route=route, exp=expected, lk=linked)
        sent_us = round(self.log.now() * 1e6)
        await intent.send(ping_pb2.Ping(nonce=msg, sent_us=sent_us, payload=payload))

    async def subscriber(self, slot: NodeSlot, route: str, delay: float) -> None:
        """Subscribe to a route or pattern; record deliveries and the first link."""
        await trio.sleep(delay)
        node = slot.node
        if node is None:
            return
        sub_id = f"{route}|{next(self._sub_ids)}"
        log = self.log

        def deliver(msg: ping_pb2.Ping) -> None:
            latency = log.now() - msg.sent_us / 1e6
            log.emit("deliver", msg=msg.nonce, sub=sub_id, lat=round(latency, 6))

        reliable = self.spec.reliable
        async with node.subscribe(route, ping_pb2.Ping, reliable=reliable, callback=deliver) as it:
            slot.subs.add(sub_id)
            self.sub_slot[sub_id] = slot
            self.subs_of_route[route].add(sub_id)
            log.emit("subscribe", sub=sub_id, node=slot.index, cls=slot.cls, route=route)
            await it.wait_intent()
            log.emit("link", sub=sub_id)
            await trio.sleep_forever()

    def unsubscribe_all(self, slot: NodeSlot) -> None:
        """End the subscriptions of ``slot``'s incarnation that went down."""
        for sub_id in slot.subs:
            self.subs_of_route[sub_route(sub_id)].discard(sub_id)
            self.log.emit("unsubscribe", sub=sub_id)
        slot.subs.clear()


def sub_route(sub_id: str) -> str:
    """The route or pattern of a subscription id (``<route>|<n>``)."""
    return sub_id.rpartition("|")[0]


def matches(pattern: str, route: str) -> bool:
    """Whether ``route`` matches ``pattern`` (same number of parts; ``*`` matches any part)."""
    parts, route_parts = pattern.split("."), route.split(".")
    return len(parts) == len(route_parts) and all(
        p == "*" or p == r for p, r in zip(parts, route_parts, strict=True)
    )
