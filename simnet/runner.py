"""Run a scenario: real DNDM nodes on a :class:`~simnet.net.SimNetwork` under virtual time.

:func:`run_scenario` builds the network from the scenario (classes, latency model, loss),
starts the bootstrap servers and then the other nodes in waves, declares the workload's
intents and interests once every node is up, publishes, plays the timed events, and writes
into the run directory:

* ``events.jsonl``: every event (schema in :mod:`simnet.metrics`);
* ``manifest.json``: versions, seed, config hash, the scenario, CPU, wall and virtual seconds
  per phase, speed-up over real time, peak RSS;
* the report (:func:`simnet.report.write_report`): summary tables and plots.

Isolation: every simulated node runs in its own task and cancel scope.  An exception that
escapes a node (its host, its sessions, its discovery) is recorded as a ``crash`` event, the
node is taken off the network, and the run goes on.  A wall-time watchdog (a thread, so it
fires even while virtual time stands still in a CPU-bound storm) stops a run that takes too
long; the run is then reported as aborted.  Randomness (identities, placement of classes and
roles, latencies, declaration times, event targets, loss) comes from streams seeded by the
scenario's seed; trio's scheduling order and py-libp2p's own randomness are not seeded, so
runs with one seed agree statistically, not bit for bit.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import platform
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import StreamHandlerFn, TProtocol
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL_ID

from dndm_p2p.config import DhtConfig, GossipConfig, NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.host.identity import save_identity
from dndm_p2p.node.node import Node
from protocols.errors import ConfigError
from protocols.v1 import ping_pb2
from simnet.clock import key_pair_from, libp2p_virtual_time, mock_clock, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.metrics import EventLog
from simnet.mplex_fix import mplex_duplex_fix
from simnet.net import Nat, NodeClass, SimNetwork, SimNode
from simnet.scenario import EventSpec, LatencySpec, Scenario

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = ["LatencyModel", "Progress", "ProgressFn", "RunResult", "SimulatedCrash", "run_scenario"]

logger = logging.getLogger(__name__)

#: The virtual wall clock of every run starts here (py-libp2p's ``time.time()``).
EPOCH: Final = 1_700_000_000.0


class SimulatedCrash(RuntimeError):
    """Raised inside a node by a ``crash`` event (to exercise the runner's isolation)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is: its phase, virtual time, nodes up, wall time, estimated time left."""

    phase: str
    virtual: float
    virtual_total: float | None
    nodes_up: int
    nodes_total: int
    wall: float
    #: Estimated wall seconds left (None until there is something to estimate from).
    eta: float | None
    #: 0..1: nodes up during the join, then virtual time of the workload.
    fraction: float


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :func:`run_scenario` produced."""

    out_dir: Path
    manifest: dict[str, Any]
    aborted: str | None


class LatencyModel:
    """The scenario's latency as a :data:`~simnet.net.LatencyFn`, with a spike ``factor``.

    Per-pair values are drawn once from a hash of the pair and the seed, and cached.
    """

    def __init__(self, spec: LatencySpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.factor = 1.0
        self.region_of: dict[str, int] = {}
        self._cache: dict[tuple[str, str], float] = {}

    def _fraction(self, a: str, b: str) -> float:
        low, high = sorted((a, b))
        return (zlib.crc32(f"{self.seed}|{low}|{high}".encode()) % 1_000_003) / 1_000_003

    def base(self, a: str, b: str) -> float:
        """One-way seconds from ``a`` to ``b`` without any spike."""
        key = (a, b)
        value = self._cache.get(key)
        if value is None:
            spec = self.spec
            if spec.model == "constant":
                value = spec.value
            elif spec.model == "uniform":
                value = spec.min + (spec.max - spec.min) * self._fraction(a, b)
            else:
                row = spec.matrix[self.region_of.get(a, 0)]
                value = row[self.region_of.get(b, 0)] * (1 + spec.jitter * self._fraction(a, b))
            self._cache[key] = value
        return value

    def __call__(self, a: str, b: str) -> float:
        """One-way seconds from ``a`` to ``b``, spike included."""
        return self.base(a, b) * self.factor


@dataclass(eq=False)
class _Slot:
    """One simulated node across its incarnations."""

    index: int
    sim: SimNode
    cls: str
    boot: bool
    key_file: Path
    publishes: list[int] = field(default_factory=list)
    subscribes: list[str] = field(default_factory=list)
    node: Node | None = None
    tasks: trio.Nursery | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)
    incarnation: int = 0
    peer: str | None = None
    down_reason: str | None = None
    kad_out: int = 0
    kad_in: int = 0
    #: Subscriptions of the current incarnation (ids).
    subs: set[str] = field(default_factory=set)

    @property
    def up(self) -> bool:
        return self.node is not None


class _Runner:
    """One run of a scenario (inside ``trio.run``)."""

    def __init__(
        self, scenario: Scenario, out_dir: Path, log: EventLog, progress: ProgressFn | None
    ) -> None:
        self.scenario = scenario
        self.out_dir = out_dir
        self.log = log
        self.progress = progress
        self.latency = LatencyModel(scenario.network.latency, scenario.seed)
        self.net = SimNetwork(
            latency=self.latency,
            loss=scenario.network.loss,
            dial_fail_delay=scenario.network.dial_fail_delay,
            seed=scenario.seed,
        )
        self.options = SimHostOptions(security=scenario.security, muxer=scenario.muxer)
        self.slots: list[_Slot] = []
        self.routes: list[str] = []
        self.patterns: list[str] = []
        self.subs_of_route: dict[str, set[str]] = defaultdict(set)
        self.sub_slot: dict[str, _Slot] = {}
        self.peer_slot: dict[str, _Slot] = {}
        self.msg_ids = itertools.count(1)
        self.sub_ids = itertools.count(1)
        self.nursery: trio.Nursery | None = None
        self.workload_started = False
        self.t0 = 0.0
        self.end_at = math.inf
        self.aborted: str | None = None
        self.marks: dict[str, tuple[float, float, float]] = {}
        self.wall_start = time.monotonic()
        self.last_report = -math.inf
        self.rate_mark: tuple[float, float] | None = None

    # -- setup --------------------------------------------------------------------------

    def build(self) -> None:
        """Nodes, classes, keys and roles, from the scenario and its seed."""
        sc = self.scenario
        keys_dir = self.out_dir / "keys"
        placement = seeded_random(sc.seed, "placement")
        labels: list[str] = []
        for spec, count in zip(sc.classes, sc.class_counts(), strict=True):
            labels.extend([spec.name] * count)
        placement.shuffle(labels)
        by_name = {spec.name: spec for spec in sc.classes}
        weights = sc.network.latency.weights or (1.0,) * max(1, len(sc.network.latency.regions))
        for index in range(sc.nodes):
            boot = index < sc.join.bootstraps
            if boot:
                limit = sc.join.bootstrap_max_connections
                node_class = NodeClass(
                    name="bootstrap",
                    max_connections=limit,
                    min_connections=min(8, limit),
                    low_watermark=min(32, limit),
                    high_watermark=max(min(32, limit), int(limit * 0.9)),
                )
                name = "bootstrap"
            else:
                spec = by_name[labels[index - sc.join.bootstraps]]
                node_class = NodeClass(
                    name=spec.name,
                    nat=Nat(spec.nat),
                    uplink=spec.uplink,
                    max_connections=spec.max_connections,
                    min_connections=spec.min_connections,
                    low_watermark=spec.low_watermark,
                    high_watermark=spec.high_watermark,
                )
                name = spec.name
            sim = self.net.add_node(node_class)
            if sc.network.latency.model == "regions":
                region = 0 if boot else placement.choices(range(len(weights)), weights)[0]
                self.latency.region_of[sim.ip] = region
            key_file = keys_dir / f"n{index}.key"
            key: KeyPair = key_pair_from(seeded_random(sc.seed, "keys", index))
            save_identity(key, key_file, overwrite=True)
            self.slots.append(_Slot(index, sim, name, boot, key_file))
        self._assign_roles(placement)

    def _assign_roles(self, rng: Any) -> None:
        work = self.scenario.workload
        regular = [s for s in self.slots if not s.boot]
        count = work.route_count(self.scenario.nodes)
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

    def node_config(self, slot: _Slot, bootstrap: tuple[str, ...]) -> NodeConfig:
        """The DNDM configuration of ``slot``'s node."""
        sc = self.scenario
        mode = sc.workload.discovery
        return NodeConfig(
            name=f"n{slot.index}",
            listen=(str(slot.sim.listen_addr()),),
            key_file=slot.key_file,
            compression=sc.node.compression,
            ping_interval=sc.node.ping_interval,
            ping_timeout=sc.node.ping_timeout,
            handshake_timeout=sc.node.handshake_timeout,
            bootstrap=bootstrap,
            dht=DhtConfig() if mode in ("dht", "both") else None,
            gossip=(
                GossipConfig(relay_all=slot.boot, namespace_depth=sc.node.namespace_depth)
                if mode in ("gossip", "both")
                else None
            ),
            max_connections=max(2, slot.sim.node_class.max_connections),
        )

    @asynccontextmanager
    async def _host(self, slot: _Slot, key_pair: KeyPair) -> AsyncIterator[IHost]:
        async with running_sim_host(self.net, slot.sim, key_pair, self.options) as host:
            _count_kad_streams(host, slot)
            yield host

    # -- nodes ----------------------------------------------------------------------------

    def bootstrap_for(self, slot: _Slot, rng: Any) -> tuple[str, ...]:
        """Entry points of ``slot``'s node: bootstrap servers, or random nodes already up."""
        join = self.scenario.join
        boots = [s for s in self.slots[: join.bootstraps] if s.up and s is not slot]
        if slot.boot:
            return tuple(_addr(s) for s in boots[:1])
        if join.mode == "random":
            pool = [s for s in self.slots if s.up and s is not slot]
            picked = rng.sample(pool, min(join.peers, len(pool)))
        else:  # each node its own bootstrap servers, round robin
            count = min(join.peers, len(boots))
            picked = [boots[(slot.index + k) % len(boots)] for k in range(count)]
        return tuple(_addr(s) for s in picked)

    async def node_task(
        self, slot: _Slot, bootstrap: tuple[str, ...], *, task_status: TaskStatus[bool]
    ) -> None:
        """Run one incarnation of ``slot``'s node until it is killed, crashes or the run ends."""
        slot.incarnation += 1
        slot.done = trio.Event()
        slot.down_reason = None
        started = False
        begun = trio.current_time()
        try:
            with trio.CancelScope() as scope:
                slot.scope = scope
                config = self.node_config(slot, bootstrap)
                factory = functools.partial(self._host, slot)
                async with Node(config, host_factory=factory) as node, trio.open_nursery() as tasks:
                    slot.node, slot.tasks, slot.peer = node, tasks, node.peer_id
                    self.peer_slot[node.peer_id] = slot
                    self.log.emit(
                        "node_up",
                        node=slot.index,
                        cls=slot.cls,
                        boot=slot.boot,
                        inc=slot.incarnation,
                        peer=node.peer_id,
                        join_s=round(trio.current_time() - begun, 6),
                    )
                    started = True
                    task_status.started(True)
                    if self.workload_started:
                        self.declare(slot, delay=0.0)
                    await trio.sleep_forever()
        except BaseException as exc:
            failure = _failure_of(exc)
            if failure is None:
                raise
            if slot.down_reason is None:  # not an error of a node being killed
                slot.down_reason = "crash"
                self.log.emit("crash", node=slot.index, error=_describe(failure))
                self.net.crash(slot.sim)
        finally:
            self._went_down(slot)
            if not started:
                task_status.started(False)

    def _went_down(self, slot: _Slot) -> None:
        if slot.peer is not None:
            self.peer_slot.pop(slot.peer, None)
        for sub_id in slot.subs:
            self.subs_of_route[self.sub_route(sub_id)].discard(sub_id)
            self.log.emit("unsubscribe", sub=sub_id)
        slot.subs.clear()
        was_up = slot.node is not None
        slot.node = slot.tasks = slot.scope = None
        if was_up:
            self.log.emit("node_down", node=slot.index, reason=slot.down_reason or "end")
        slot.done.set()

    def sub_route(self, sub_id: str) -> str:
        """The route or pattern of a subscription id (``<route>|<n>``)."""
        return sub_id.rpartition("|")[0]

    async def start_node(self, slot: _Slot, rng: Any) -> bool:
        """Start ``slot``'s node in the run's nursery; True once it is up."""
        assert self.nursery is not None
        bootstrap = self.bootstrap_for(slot, rng)
        ok: bool = await self.nursery.start(self.node_task, slot, bootstrap)
        return ok

    async def kill(self, slot: _Slot, reason: str) -> None:
        """Take ``slot``'s node down (its connections reset) and wait until it has stopped."""
        if slot.scope is None:
            return
        slot.down_reason = reason
        self.net.crash(slot.sim)
        slot.scope.cancel()
        await slot.done.wait()

    async def restart(self, slot: _Slot, after: float, rng: Any) -> None:
        """Bring ``slot``'s node back ``after`` seconds from now."""
        await trio.sleep(after)
        await slot.done.wait()
        if self.aborted is not None or trio.current_time() >= self.end_at:
            return
        self.net.restart(slot.sim)
        self.log.emit("restart", node=slot.index)
        await self.start_node(slot, rng)

    # -- join -------------------------------------------------------------------------------

    async def join(self) -> None:
        """Bootstrap servers first, then the others in waves (at most ``rate`` a second)."""
        join = self.scenario.join
        rng = seeded_random(self.scenario.seed, "join")
        boots, others = self.slots[: join.bootstraps], self.slots[join.bootstraps :]
        await self.start_node(boots[0], rng)
        async with trio.open_nursery() as wave:
            for slot in boots[1:]:
                wave.start_soon(self.start_node, slot, rng)
        interval = 1 / join.rate if join.rate > 0 else 0.0
        for first in range(0, len(others), join.concurrency):
            async with trio.open_nursery() as wave:
                for slot in others[first : first + join.concurrency]:
                    wave.start_soon(self.start_node, slot, rng)
                    if interval:
                        await trio.sleep(interval)

    # -- workload ---------------------------------------------------------------------------

    def declare(self, slot: _Slot, delay: float) -> None:
        """Start ``slot``'s publishers and subscribers (after ``delay`` seconds)."""
        if slot.tasks is None:
            return
        rng = seeded_random(self.scenario.seed, "declare", slot.index, slot.incarnation)
        for route_index in slot.publishes:
            slot.tasks.start_soon(self.publisher, slot, route_index, delay, rng.random())
        for route in slot.subscribes:
            slot.tasks.start_soon(self.subscriber, slot, route, delay)

    async def publisher(self, slot: _Slot, route_index: int, delay: float, phase: float) -> None:
        """Publish on one route at the workload's rate until ``drain`` before the end."""
        await trio.sleep(delay)
        node = slot.node
        if node is None:
            return
        work = self.scenario.workload
        route = self.routes[route_index]
        payload = b"\x00" * work.size
        period = 1 / work.rate
        stop = self.end_at - work.drain
        async with node.publish(route, ping_pb2.Ping) as intent:
            await trio.sleep(period * phase)
            while trio.current_time() < stop:
                await self._publish_one(slot, intent, route, payload)
                await trio.sleep(period)
            await trio.sleep_forever()

    async def _publish_one(
        self, slot: _Slot, intent: Intent[ping_pb2.Ping], route: str, payload: bytes
    ) -> None:
        msg = next(self.msg_ids)
        expected = sorted(self.subs_of_route[route])
        for pattern in self.patterns:
            if _matches(pattern, route):
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

    async def subscriber(self, slot: _Slot, route: str, delay: float) -> None:
        """Subscribe to a route or pattern; record deliveries and the first link."""
        await trio.sleep(delay)
        node = slot.node
        if node is None:
            return
        sub_id = f"{route}|{next(self.sub_ids)}"
        log = self.log

        def deliver(msg: ping_pb2.Ping) -> None:
            latency = log.now() - msg.sent_us / 1e6
            log.emit("deliver", msg=msg.nonce, sub=sub_id, lat=round(latency, 6))

        reliable = self.scenario.workload.reliable
        async with node.subscribe(route, ping_pb2.Ping, reliable=reliable, callback=deliver) as it:
            slot.subs.add(sub_id)
            self.sub_slot[sub_id] = slot
            self.subs_of_route[route].add(sub_id)
            log.emit("subscribe", sub=sub_id, node=slot.index, cls=slot.cls, route=route)
            await it.wait_intent()
            log.emit("link", sub=sub_id)
            await trio.sleep_forever()

    def start_workload(self) -> None:
        """Declare every node's handles, spread over ``declare_spread`` seconds."""
        work = self.scenario.workload
        rng = seeded_random(self.scenario.seed, "spread")
        self.workload_started = True
        for slot in self.slots:
            self.declare(slot, delay=work.declare_spread * rng.random())

    # -- events -----------------------------------------------------------------------------

    async def play(self, event: EventSpec, index: int) -> None:
        """Wait for ``event``'s time and apply it."""
        await trio.sleep_until(self.t0 + event.at)
        rng = seeded_random(self.scenario.seed, "event", index)
        kind = event.kind
        assert self.nursery is not None
        if kind in ("kill", "crash"):
            for slot in self._targets(event, rng):
                await self._fault(slot, kind, event.restart_after, rng)
        elif kind == "churn":
            assert event.every is not None
            assert event.until is not None
            assert event.downtime is not None
            while trio.current_time() <= self.t0 + event.until:
                for slot in self._targets(event, rng):
                    await self._fault(slot, "kill", event.downtime, rng)
                await trio.sleep(event.every)
        elif kind == "partition":
            assert event.fraction is not None
            regular = [s for s in self.slots if not s.boot]
            cut = rng.sample(regular, max(1, round(len(regular) * event.fraction)))
            self.net.partition([s.sim for s in cut])
            self.log.emit("partition", sizes=[len(self.slots) - len(cut), len(cut)])
        elif kind == "heal":
            self.net.heal()
            self.log.emit("heal")
        elif kind == "latency_spike":
            assert event.factor is not None
            self.latency.factor = event.factor
            self.log.emit("latency_spike", factor=event.factor)
            if event.duration is not None:
                await trio.sleep(event.duration)
                self.latency.factor = 1.0
                self.log.emit("latency_restore")
        elif kind == "bootstrap_failure":
            boots = [s for s in self.slots if s.boot and s.up]
            self.log.emit("bootstrap_failure", nodes=[s.index for s in boots])
            for slot in boots:
                await self._fault(slot, "kill", event.duration, rng)

    def _targets(self, event: EventSpec, rng: Any) -> list[_Slot]:
        up = [s for s in self.slots if s.up]
        pool = {
            "any": [s for s in up if not s.boot],
            "bootstrap": [s for s in up if s.boot],
            "publishers": [s for s in up if s.publishes],
            "subscribers": [s for s in up if s.subscribes],
        }[event.target]
        if event.count is not None:
            wanted = event.count
        else:
            wanted = round(len(pool) * (event.fraction or 0))
        picked: list[_Slot] = rng.sample(pool, min(len(pool), max(1, wanted)))
        return picked

    async def _fault(self, slot: _Slot, kind: str, restart_after: float | None, rng: Any) -> None:
        assert self.nursery is not None
        if kind == "crash":
            if slot.tasks is not None:
                slot.tasks.start_soon(_raise_crash, slot.index)
        else:
            self.log.emit("kill", node=slot.index, restart_after=restart_after)
            self.nursery.start_soon(self.kill, slot, "kill")
        if restart_after is not None:
            self.nursery.start_soon(self.restart, slot, restart_after, rng)

    # -- measurement ------------------------------------------------------------------------

    def mark(self, name: str) -> None:
        """Record a phase boundary: virtual, wall and CPU seconds now."""
        self.marks[name] = (self.log.now(), time.monotonic(), time.process_time())
        self.log.emit("phase", name=name)

    async def sampler(self) -> None:
        """Sample connection counts and report progress, every ``sample_interval``."""
        boots = [s for s in self.slots if s.boot]
        while True:
            up = sum(1 for s in self.slots if s.up)
            conns = [s.sim.connection_count for s in self.slots if s.up]
            self.log.emit(
                "sample",
                up=up,
                conns_mean=round(sum(conns) / len(conns), 2) if conns else 0,
                boot_conns=[s.sim.connection_count for s in boots],
            )
            self.report_progress(force=False)
            await trio.sleep(self.scenario.sample_interval)

    def report_progress(self, *, force: bool) -> None:
        """Call the progress callback (at most twice a wall second unless ``force``)."""
        if self.progress is None:
            return
        wall = time.monotonic()
        if not force and wall - self.last_report < 0.5:
            return
        self.last_report = wall
        elapsed = wall - self.wall_start
        up = sum(1 for s in self.slots if s.up)
        total = len(self.slots)
        now = trio.current_time()
        eta: float | None = None
        if not self.workload_started:
            phase = "join"
            fraction = up / total
            if up:
                eta = elapsed * (total - up) / up
        else:
            phase = "workload"
            length = self.end_at - self.t0
            done = min(max(now - self.t0, 0.0), length)
            fraction = done / length if length else 1.0
            if self.rate_mark is None:
                self.rate_mark = (now, wall)
            elif now > self.rate_mark[0]:
                per_virtual = (wall - self.rate_mark[1]) / (now - self.rate_mark[0])
                eta = per_virtual * (length - done)
        virtual_total = None
        if self.workload_started:
            virtual_total = self.log.now() + self.end_at - now
        self.progress(
            Progress(phase, self.log.now(), virtual_total, up, total, elapsed, eta, fraction)
        )

    def node_stats(self) -> None:
        """One ``node_stats`` event per node."""
        for slot in self.slots:
            node, counters = slot.node, slot.sim.counters
            rt = peers = errors = None
            lookups = provides = 0
            lookup_s: float | None = None
            if node is not None:
                peers = len(node.peers())
                errors = node.error_count
                discovery = node.discovery
                if discovery is not None and discovery.dht is not None:
                    dht = discovery.dht
                    rt = dht.kad.get_routing_table_size()
                    lookups = dht.stats.lookups
                    provides = dht.stats.provides
                    seconds = list(dht.stats.lookup_seconds)
                    lookup_s = round(sum(seconds) / len(seconds), 6) if seconds else None
            self.log.emit(
                "node_stats",
                node=slot.index,
                cls=slot.cls,
                boot=slot.boot,
                up=node is not None,
                bytes_out=counters.bytes_sent,
                bytes_in=counters.bytes_received,
                dials_out=counters.dials_out,
                dials_in=counters.dials_in,
                dials_failed=counters.dials_failed,
                conns=slot.sim.connection_count,
                peers=peers,
                rt=rt,
                dht_lookups=lookups,
                dht_provides=provides,
                dht_lookup_s=lookup_s,
                kad_out=slot.kad_out,
                kad_in=slot.kad_in,
                errors=errors or 0,
            )

    # -- the run ------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Abort the run (called in the trio thread, e.g. by the watchdog)."""
        if self.aborted is None:
            self.aborted = reason
            self.log.emit(reason, wall=round(time.monotonic() - self.wall_start, 1))
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def main(self) -> None:
        """The whole run."""
        self.log.start()
        sc = self.scenario
        self.log.emit("run_start", scenario=sc.name, nodes=sc.nodes, seed=sc.seed)
        self.mark("start")
        token = trio.lowlevel.current_trio_token()
        watchdog = threading.Timer(sc.watchdog, _call_soon, (token, self.stop, "watchdog"))
        watchdog.daemon = True
        watchdog.start()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self.sampler)
                await self.join()
                self.mark("joined")
                self.t0 = trio.current_time() + sc.workload.start
                self.end_at = self.t0 + sc.duration
                await trio.sleep_until(self.t0)
                self.mark("workload")
                self.report_progress(force=True)
                self.start_workload()
                for index, event in enumerate(sc.events):
                    nursery.start_soon(self.play, event, index)
                steady = self.t0 + min(
                    sc.workload.declare_spread + sc.workload.discovery_window, sc.duration
                )
                await trio.sleep_until(steady)
                self.mark("steady")
                await trio.sleep_until(self.end_at)
                self.mark("end")
                self.report_progress(force=True)
                self.node_stats()
                nursery.cancel_scope.cancel()
        finally:
            watchdog.cancel()
            if "end" not in self.marks:
                self.mark("end")
                self.node_stats()
            self.log.emit("run_end", aborted=self.aborted)


def _call_soon(token: trio.lowlevel.TrioToken, fn: Callable[[str], None], arg: str) -> None:
    try:
        token.run_sync_soon(fn, arg)
    except trio.RunFinishedError:
        return


async def _raise_crash(index: int) -> None:
    await trio.lowlevel.checkpoint()
    raise SimulatedCrash(f"crash event injected into node {index}")


def _failure_of(exc: BaseException) -> BaseException | None:
    """The non-cancellation part of ``exc`` (None: a pure cancellation or an interrupt)."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:
            return None
        return rest if all(isinstance(e, Exception) for e in _leaves(rest)) else None
    return exc if isinstance(exc, Exception) else None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaves = _leaves(exc)
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaves)[:500]


def _addr(slot: _Slot) -> str:
    assert slot.node is not None
    return slot.node.addrs[0]


def _matches(pattern: str, route: str) -> bool:
    parts, route_parts = pattern.split("."), route.split(".")
    return len(parts) == len(route_parts) and all(
        p == "*" or p == r for p, r in zip(parts, route_parts, strict=True)
    )


def _count_kad_streams(host: IHost, slot: _Slot) -> None:
    """Count the DHT streams ``host`` opens and serves into ``slot``."""
    new_stream = host.new_stream
    set_handler = host.set_stream_handler

    async def counting_new_stream(peer_id: Any, protocol_ids: Any) -> INetStream:
        if KAD_PROTOCOL_ID in protocol_ids:
            slot.kad_out += 1
        return await new_stream(peer_id, protocol_ids)

    def counting_set_handler(protocol_id: TProtocol, handler: StreamHandlerFn) -> None:
        if protocol_id != KAD_PROTOCOL_ID:
            set_handler(protocol_id, handler)
            return

        async def counted(stream: INetStream) -> None:
            slot.kad_in += 1
            await handler(stream)

        set_handler(protocol_id, counted)

    host.new_stream = counting_new_stream  # type: ignore[method-assign]
    host.set_stream_handler = counting_set_handler  # type: ignore[method-assign,assignment]


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("dndm-p2p", "libp2p", "trio", "protobuf"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    found["git"] = sha or "unknown"
    return found


def _phases(marks: dict[str, tuple[float, float, float]]) -> dict[str, dict[str, float]]:
    order = [name for name in ("start", "joined", "workload", "steady", "end") if name in marks]
    found = {}
    for a, b in itertools.pairwise(order):
        virtual = marks[b][0] - marks[a][0]
        wall = marks[b][1] - marks[a][1]
        cpu = marks[b][2] - marks[a][2]
        found[f"{a}->{b}"] = {
            "virtual_s": round(virtual, 3),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "speedup": round(virtual / wall, 3) if wall > 0 else math.inf,
        }
    return found


def run_scenario(
    scenario: Scenario, out_dir: Path, *, progress: ProgressFn | None = None, report: bool = True
) -> RunResult:
    """Run ``scenario`` and write its events, manifest and (with ``report``) its report.

    Must be called outside any trio run (it starts its own, under a mock clock).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.monotonic(), time.process_time()
    with EventLog(out_dir / "events.jsonl") as log:
        runner = _Runner(scenario, out_dir, log, progress)
        runner.build()
        # Thousands of nodes closing at once would flood the terminal with their warnings;
        # what matters is in the events.
        loggers = [logging.getLogger(name) for name in ("libp2p", "dndm_p2p", "dht", "nat")]
        levels = [logger.level for logger in loggers]
        for quiet in loggers:
            quiet.setLevel(logging.CRITICAL)
        try:
            with libp2p_virtual_time(epoch=EPOCH), mplex_duplex_fix():
                trio.run(runner.main, clock=mock_clock())
        finally:
            for quiet, level in zip(loggers, levels, strict=True):
                quiet.setLevel(level)
    wall_s, cpu_s = time.monotonic() - wall, time.process_time() - cpu
    virtual_s = runner.marks["end"][0] if "end" in runner.marks else 0.0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest: dict[str, Any] = {
        "scenario": scenario.name,
        "nodes": scenario.nodes,
        "seed": scenario.seed,
        "config_hash": scenario.config_hash(),
        "versions": _versions(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - wall_s)),
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "virtual_s": round(virtual_s, 3),
        "speedup": round(virtual_s / wall_s, 3) if wall_s > 0 else None,
        "speedup_cpu": round(virtual_s / cpu_s, 3) if cpu_s > 0 else None,
        "phases": _phases(runner.marks),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_rss_per_node_mb": round(peak_kb / 1024 / scenario.nodes, 3),
        "events": log.count,
        "aborted": runner.aborted,
        "scenario_config": scenario.as_dict(),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if report:
        from simnet.report import write_report

        write_report(out_dir)
    return RunResult(out_dir, manifest, runner.aborted)


def default_run_dir(scenario: Scenario, base: Path | None = None) -> Path:
    """``runs/<scenario>-n<nodes>-s<seed>-<timestamp>`` under ``base`` (default: cwd)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{scenario.name}-n{scenario.nodes}-s{scenario.seed}-{stamp}"
    return (base if base is not None else Path("runs")) / name


def check_out_dir(out_dir: Path) -> None:
    """Refuse to write a run into a directory that already holds one."""
    if (out_dir / "events.jsonl").exists():
        raise ConfigError(f"{out_dir} already holds a run (events.jsonl); choose another --out")
