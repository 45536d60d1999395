"""The run loop: real DNDM nodes on a :class:`~simnet.net.SimNetwork` under virtual time.

:func:`run_scenario` builds the network from the scenario (classes, latency model, loss),
starts the bootstrap servers and then the other nodes in waves, declares the workload's
intents and interests once every node is up, publishes, plays the timed events, and writes
into the run directory:

* ``events.jsonl``: every event (schema in :mod:`simnet.metrics`);
* ``manifest.json`` (:mod:`simnet.manifest`): versions, seed, config hash, the scenario, CPU,
  wall and virtual seconds per phase, speed-up over real time, peak RSS;
* the report (:func:`simnet.report.write_report`): summary tables and plots.

Its pieces: each simulated node is a :class:`~simnet.slot.NodeSlot`; the latency model is a
:class:`~simnet.latency.LatencyModel`; the workload's routes, roles, publishers and
subscribers are a :class:`~simnet.workload.Traffic`; progress goes to a
:data:`~simnet.progress.ProgressFn`.

Isolation (:mod:`simnet.isolation`): every simulated node runs in its own task and cancel
scope.  An exception that escapes a node (its host, its sessions, its discovery) is recorded
as a ``crash`` event, the node is taken off the network, and the run goes on.  A wall-time
watchdog stops a run that takes too long; the run is then reported as aborted.  Randomness
(identities, placement of classes and roles, latencies, declaration times, event targets,
loss) comes from streams seeded by the scenario's seed; trio's scheduling order and
py-libp2p's own randomness are not seeded, so runs with one seed agree statistically, not bit
for bit.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair

from dndm_p2p.config import DhtConfig, GossipConfig, NodeConfig
from dndm_p2p.host.identity import save_identity
from dndm_p2p.node.node import Node
from simnet.clock import key_pair_from, libp2p_virtual_time, mock_clock, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.isolation import SimulatedCrash, describe, failure_of, raise_crash, start_watchdog
from simnet.latency import LatencyModel
from simnet.manifest import Mark, check_out_dir, default_run_dir, run_manifest, write_manifest
from simnet.metrics import EventLog
from simnet.net import Nat, NodeClass, SimNetwork
from simnet.progress import Progress, ProgressFn
from simnet.scenario import EventSpec, Scenario
from simnet.slot import NodeSlot, count_kad_streams
from simnet.workload import Traffic

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = [
    "LatencyModel",
    "Progress",
    "ProgressFn",
    "RunResult",
    "SimulatedCrash",
    "check_out_dir",
    "default_run_dir",
    "run_scenario",
]

logger = logging.getLogger(__name__)

#: The virtual wall clock of every run starts here (py-libp2p's ``time.time()``).
EPOCH: Final = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :func:`run_scenario` produced."""

    out_dir: Path
    manifest: dict[str, Any]
    aborted: str | None


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
        self.slots: list[NodeSlot] = []
        self.traffic = Traffic(scenario.workload, log)
        self.peer_slot: dict[str, NodeSlot] = {}
        self.nursery: trio.Nursery | None = None
        self.workload_started = False
        self.t0 = 0.0
        self.end_at = math.inf
        self.aborted: str | None = None
        self.marks: dict[str, Mark] = {}
        self.wall_start = time.monotonic()
        self.last_report = -math.inf
        self.rate_mark: tuple[float, float] | None = None

    # -- setup --------------------------------------------------------------------------

    def build(self) -> None:
        """Nodes, classes, keys and roles, from the scenario and its seed."""
        sc = self.scenario
        keys_dir = self.out_dir / "keys"
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the run directory is ours
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
            self.slots.append(NodeSlot(index, sim, name, boot, key_file))
        self.traffic.assign_roles(self.slots, sc.nodes, placement)

    def node_config(self, slot: NodeSlot, bootstrap: tuple[str, ...]) -> NodeConfig:
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
    async def _host(self, slot: NodeSlot, key_pair: KeyPair) -> AsyncIterator[IHost]:
        async with running_sim_host(self.net, slot.sim, key_pair, self.options) as host:
            count_kad_streams(host, slot)
            yield host

    # -- nodes ----------------------------------------------------------------------------

    def bootstrap_for(self, slot: NodeSlot, rng: Any) -> tuple[str, ...]:
        """Entry points of ``slot``'s node: bootstrap servers, or random nodes already up."""
        join = self.scenario.join
        boots = [s for s in self.slots[: join.bootstraps] if s.up and s is not slot]
        if slot.boot:
            return tuple(s.address for s in boots[:1])
        if join.mode == "random":
            pool = [s for s in self.slots if s.up and s is not slot]
            picked = rng.sample(pool, min(join.peers, len(pool)))
        else:  # each node its own bootstrap servers, round robin
            count = min(join.peers, len(boots))
            picked = [boots[(slot.index + k) % len(boots)] for k in range(count)]
        return tuple(s.address for s in picked)

    async def node_task(
        self, slot: NodeSlot, bootstrap: tuple[str, ...], *, task_status: TaskStatus[bool]
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
            failure = failure_of(exc)
            if failure is None:
                raise
            if slot.down_reason is None:  # not an error of a node being killed
                slot.down_reason = "crash"
                self.log.emit("crash", node=slot.index, error=describe(failure))
                self.net.crash(slot.sim)
        finally:
            self._went_down(slot)
            if not started:
                task_status.started(False)

    def _went_down(self, slot: NodeSlot) -> None:
        if slot.peer is not None:
            self.peer_slot.pop(slot.peer, None)
        self.traffic.unsubscribe_all(slot)
        was_up = slot.node is not None
        slot.node = slot.tasks = slot.scope = None
        if was_up:
            self.log.emit("node_down", node=slot.index, reason=slot.down_reason or "end")
        slot.done.set()

    async def start_node(self, slot: NodeSlot, rng: Any) -> bool:
        """Start ``slot``'s node in the run's nursery; True once it is up."""
        assert self.nursery is not None
        bootstrap = self.bootstrap_for(slot, rng)
        ok: bool = await self.nursery.start(self.node_task, slot, bootstrap)
        return ok

    async def kill(self, slot: NodeSlot, reason: str) -> None:
        """Take ``slot``'s node down (its connections reset) and wait until it has stopped."""
        if slot.scope is None:
            return
        slot.down_reason = reason
        self.net.crash(slot.sim)
        slot.scope.cancel()
        await slot.done.wait()

    async def restart(self, slot: NodeSlot, after: float, rng: Any) -> None:
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

    def declare(self, slot: NodeSlot, delay: float) -> None:
        """Start ``slot``'s publishers and subscribers (after ``delay`` seconds)."""
        if slot.tasks is None:
            return
        rng = seeded_random(self.scenario.seed, "declare", slot.index, slot.incarnation)
        traffic = self.traffic
        for route_index in slot.publishes:
            phase = rng.random()
            slot.tasks.start_soon(traffic.publisher, slot, route_index, delay, phase, self.end_at)
        for route in slot.subscribes:
            slot.tasks.start_soon(traffic.subscriber, slot, route, delay)

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

    def _targets(self, event: EventSpec, rng: Any) -> list[NodeSlot]:
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
        picked: list[NodeSlot] = rng.sample(pool, min(len(pool), max(1, wanted)))
        return picked

    async def _fault(
        self, slot: NodeSlot, kind: str, restart_after: float | None, rng: Any
    ) -> None:
        assert self.nursery is not None
        if kind == "crash":
            if slot.tasks is not None:
                slot.tasks.start_soon(raise_crash, slot.index)
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
            self.log.emit("node_stats", **slot.stats())

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
        watchdog = start_watchdog(sc.watchdog, self.stop)
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
            with libp2p_virtual_time(epoch=EPOCH):
                trio.run(runner.main, clock=mock_clock())
        finally:
            for quiet, level in zip(loggers, levels, strict=True):
                quiet.setLevel(level)
    wall_s, cpu_s = time.monotonic() - wall, time.process_time() - cpu
    manifest = run_manifest(
        scenario,
        runner.marks,
        wall_s=wall_s,
        cpu_s=cpu_s,
        events=log.count,
        aborted=runner.aborted,
    )
    write_manifest(out_dir, manifest)
    if report:
        from simnet.report import write_report

        write_report(out_dir)
    return RunResult(out_dir, manifest, runner.aborted)
