"""Soak: a bootstrap node under churn and one hostile peer at a time; a legitimate link measured.

Run it as ``python -m benchmarks.bench_soak [--quick] [--attacks a,b] [--peers N]``.  It prints
one JSON object per figure on stdout (see :mod:`benchmarks.common`) and a summary with the
targets on stderr.  Every process is a child of the benchmark, on 127.0.0.1 only:

* the **victim** (``--role victim``): a :class:`~dndm_p2p.node.node.Node` with exactly the
  configuration ``dndm node --bootstrap`` runs (a DHT server relaying every advert topic, 1,000
  connections; mDNS, the admin socket and the address book off), which also publishes
  ``bench.Tick`` messages on :data:`ROUTE` at a paced ``--rate`` (``await send()``, so a
  publisher that is made to wait falls behind);
* the **subscriber** (``--role subscriber``): a Node with a reliable interest (overflow
  ``block``) in :data:`ROUTE`, connected to the victim; it checks the sequence numbers of what
  arrives (gaps are losses, repeats duplicates) and reports counts on command;
* the **churner** (``--role churner``): ``--peers`` fresh py-libp2p identities, ``--churn``
  at a time at most ``--churn-rate`` per second, each connecting to the victim, running
  identify and one Kademlia FIND_NODE, and disconnecting;
* one **attacker** at a time: ``python -m benchmarks.soak_attacks.<name>`` (the contract is in
  :mod:`benchmarks.soak_attacks`), for ``--attack-seconds``.

For each attack: the link's rate over ``--baseline-seconds`` just before it, and during it;
reliable messages lost (gaps) and duplicated during it; the victim's RSS (``VmRSS`` of
``/proc/<pid>/status``, sampled every 0.1 s by the benchmark itself, so a frozen victim is
measured too): its peak during the attack and a few seconds after, minus its value at the
start; whether the victim was still running; and which of the victim's counters moved (a
snapshot the victim prints on command: ``node.error_count``, errors by class from
``node.events()``, ``dropped_streams``, discovery, DHT and gossip counters, its sessions'
counters, and any resource-manager counters the node exposes); a counter counts as the
attack's when it moved at least 1.5 times as much as the churn alone moves it (its rate in the
baseline window), the node's periodic work (:data:`BACKGROUND_COUNTERS`) aside.  After the
attack, a recovery window of ``--baseline-seconds`` measures the link again.  A victim that
exits is restarted (with a new subscriber) before the next attack, so every attack is
measured, and its last exception line is reported; so is a victim whose link does not carry
half the publisher's rate in the next baseline window (an effect that outlasted its attacker).

Targets (from the hardening issue): the victim never exits; the link's rate during an attack
>= 80 % of the rate before it; no reliable loss; RSS growth under one attacker <= 64 MB; every
attack moves a counter.  Missed targets show in the figures (``met``) and the summary; the
exit status is 0 unless ``--strict``.  Every child is killed and reaped at the end, on error
and on Ctrl-C (SIGINT or SIGTERM) too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import trio

from benchmarks.common import BenchmarkFailure, emit, summary
from benchmarks.netproc import Child, ChildFailed, announce, aread_command, spawn
from benchmarks.proto.bench_pb2 import Tick
from benchmarks.soak_attacks import ATTACKS

#: The route the victim publishes and the legitimate subscriber (and some attackers) want.
ROUTE = "soak.legit"
#: The same route as the wire names it (``Type@path``), for the attack programs.
WIRE_ROUTE = f"{Tick.DESCRIPTOR.full_name}@{ROUTE}"
#: Targets.
TARGET_RATE_RATIO = 0.8
TARGET_RSS_MB = 64.0
#: Seconds allowed for a command answer of a child.
ANSWER_TIMEOUT = 10.0
#: Seconds an attacker gets past its ``--seconds`` before it is killed.
ATTACK_GRACE = 10.0
#: Seconds of RSS sampling after an attacker ended (memory it left behind).
AFTER_SECONDS = 2.0
#: Counters of the node's own periodic work (pings, advert refreshes, its DHT record): they
#: move with or without an attacker, so they are never taken as a sign of one.
BACKGROUND_COUNTERS = (
    "sessions.pings_sent",
    "sessions.pongs_received",
    "gossip.published",
    "gossip.adverts_sent",
    "dht.lookups",
    "dht.provides",
    "discovery.dht_lookups",
    "discovery.dht_provides",
    "discovery.gossip_announcements",
)
#: How often the victim's RSS is sampled.
RSS_PERIOD = 0.1


# -- the victim -----------------------------------------------------------------------------------


@dataclass
class PublisherState:
    """What the victim's paced publisher did."""

    sent: int = 0
    max_send_wait: float = 0.0


def victim_config() -> Any:
    """The configuration ``dndm node --bootstrap`` runs, without mDNS, admin socket or book."""
    from dndm_p2p.cli.main import parse_args
    from dndm_p2p.cli.running import node_config

    config = node_config(parse_args(["node", "--bootstrap", "--name", "soak-victim"]))
    return dataclasses.replace(config, mdns=None, admin_socket=None, address_book=None)


def _int_fields(prefix: str, obj: object) -> dict[str, int]:
    """The integer counters of a stats object (a dataclass, a mapping or ``as_dict()``)."""
    if obj is None:
        return {}
    items: dict[str, object]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, dict):
        items = dict(obj)
    elif callable(getattr(obj, "as_dict", None)):
        items = dict(obj.as_dict())  # type: ignore[attr-defined]
    elif callable(getattr(obj, "snapshot", None)):
        return _int_fields(prefix, obj.snapshot())  # type: ignore[attr-defined]
    else:
        return {}
    out: dict[str, int] = {}
    for key, value in items.items():
        if isinstance(value, int) and not isinstance(value, bool):
            out[f"{prefix}.{key}"] = value
        elif isinstance(value, dict | tuple) or dataclasses.is_dataclass(value):
            out.update(_int_fields(f"{prefix}.{key}", value))
    return out


def victim_counters(node: Any, intent: Any, events: Counter[str]) -> dict[str, int]:
    """Every counter of the victim that an attack could move (see the module docstring)."""
    counters = {
        "node.error_count": node.error_count,
        "node.dropped_streams": node.dropped_streams,
        "intent.unrouted": intent.stats.unrouted,
    }
    counters.update(events)
    discovery = node.discovery
    if discovery is not None:
        counters.update(_int_fields("discovery", discovery.stats))
        if discovery.dht is not None:
            counters.update(_int_fields("dht", discovery.dht.stats))
        if discovery.gossip is not None:
            counters.update(_int_fields("gossip", discovery.gossip.stats))
    # A resource manager, rate limits or connection limits, under whatever name they land.
    for name in ("resources", "resource_manager", "limits", "rate_limits", "counters"):
        value = getattr(node, name, None)
        if callable(value):  # node.counters(), node.resources(): snapshots
            value = value()
        counters.update(_int_fields(name, value))
    for session in list(node._sessions.values()):
        for key, value in _int_fields("sessions", session.stats).items():
            if "rtt" not in key:  # a measure, not a counter
                counters[key] = counters.get(key, 0) + value
    for link in node.links():
        counters["links.dropped"] = counters.get("links.dropped", 0) + link.dropped
    return counters


def victim_gauges(node: Any) -> dict[str, int]:
    """Current sizes of the victim's tables (not counters: they go down too)."""
    host = node.host
    return {
        "peers": len(node.peers()),
        "foreign_peers": len(node.foreign_peers),
        "links": len(node.links()),
        "connections": len(host.get_network().connections),
        "peerstore": len(host.get_peerstore().peer_ids()),
    }


async def run_victim(rate: float) -> None:
    """The victim's process: the bootstrap node publishing at ``rate``, snapshots on command."""
    from dndm_p2p.node.node import Node

    events: Counter[str] = Counter()
    state = PublisherState()
    async with Node(victim_config()) as node, node.events(4096) as stream:
        intent = node.publish(ROUTE, Tick)

        async def count_events() -> None:
            async for event in stream:
                events[f"events.{event.kind}"] += 1
                if event.error is not None:
                    events[f"errors.{type(event.error).__name__}"] += 1

        async def publish() -> None:
            period = 0.01
            per_tick = max(1, round(rate * period))
            period = per_tick / rate
            next_time = trio.current_time()
            send = intent.send
            while True:
                for _ in range(per_tick):
                    state.sent += 1
                    began = trio.current_time()
                    await send(Tick(seq=state.sent, sent_ns=time.time_ns()))
                    state.max_send_wait = max(state.max_send_wait, trio.current_time() - began)
                next_time += period
                now = trio.current_time()
                if next_time < now - 1.0:  # far behind (the publisher was made to wait)
                    next_time = now
                await trio.sleep_until(next_time)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_events)
            nursery.start_soon(publish)
            addr = node.addrs[0]
            if "/p2p/" not in addr:
                addr = f"{addr}/p2p/{node.peer_id}"
            announce({"ready": True, "addr": addr, "peer": node.peer_id, "pid": os.getpid()})
            while (command := await aread_command()) is not None:
                if command.get("cmd") == "snapshot":
                    announce(
                        {
                            "ok": True,
                            "counters": victim_counters(node, intent, events),
                            "gauges": victim_gauges(node),
                            "sent": state.sent,
                            "max_send_wait": round(state.max_send_wait, 3),
                        }
                    )
                    state.max_send_wait = 0.0
                else:
                    announce({"ok": False, "error": f"unknown command {command!r}"})
            nursery.cancel_scope.cancel()


# -- the legitimate subscriber --------------------------------------------------------------------


@dataclass
class LinkState:
    """What the subscriber received: counts and sequence checks."""

    received: int = 0
    lost: int = 0
    duplicates: int = 0
    last_seq: int = 0


async def run_subscriber(target: str) -> None:
    """The subscriber's process: a reliable interest in :data:`ROUTE`; counts on command."""
    from dndm_p2p.config import NodeConfig
    from dndm_p2p.node.node import Node

    state = LinkState()
    first = trio.Event()
    config = NodeConfig(name="soak-subscriber", peers=(target,))
    async with Node(config) as node:
        interest = node.subscribe(ROUTE, Tick, depth=1024, overflow="block", reliable=True)

        async def receive() -> None:
            while True:
                batch = await interest.receive_batch(1024)
                for msg in batch:
                    seq = msg.seq
                    if state.last_seq and seq <= state.last_seq:
                        state.duplicates += 1
                        continue
                    if state.last_seq and seq > state.last_seq + 1:
                        state.lost += seq - state.last_seq - 1
                    state.last_seq = seq
                    state.received += 1
                first.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            with trio.fail_after(60.0):
                await first.wait()
            announce({"ready": True})
            while (command := await aread_command()) is not None:
                if command.get("cmd") == "mark":
                    answer = dataclasses.asdict(state)
                    announce({"ok": True, "t": time.monotonic(), **answer})
                else:
                    announce({"ok": False, "error": f"unknown command {command!r}"})
            nursery.cancel_scope.cancel()


# -- the churner ---------------------------------------------------------------------------------


async def churn_one(target: str, stats: Counter[str]) -> None:
    """One fresh identity: connect to ``target``, identify, one FIND_NODE, disconnect."""
    import os as _os

    from libp2p.custom_types import TProtocol
    from libp2p.identity.identify.identify import ID as IDENTIFY
    from libp2p.kad_dht.pb.kademlia_pb2 import Message
    from libp2p.network.stream.exceptions import StreamEOF

    from dndm_p2p.host.build import HostConfig, connect, running_host
    from dndm_p2p.host.identity import generate_identity
    from protocols.framing import FrameReader, encode_frame

    async with running_host(generate_identity(), HostConfig(close_timeout=2.0)) as host:
        with trio.fail_after(10.0):
            peer = await connect(host, target)
        stats["connected"] += 1
        with trio.fail_after(10.0):
            stream = await host.new_stream(peer, [IDENTIFY])
            with contextlib.suppress(StreamEOF):
                while await stream.read(65536):
                    pass
        stats["identified"] += 1
        with trio.fail_after(10.0):
            stream = await host.new_stream(peer, [TProtocol("/ipfs/kad/1.0.0")])
            request = Message(type=Message.MessageType.FIND_NODE, key=_os.urandom(32))
            await stream.write(encode_frame(request.SerializeToString()))
            if await FrameReader(stream, 1 << 20).read_frame() is not None:
                stats["dht_answers"] += 1
            await stream.reset()


async def run_churner(target: str, peers: int, concurrency: int, rate: float) -> None:
    """The churner's process: ``peers`` identities through ``target`` (re-aimed on command).

    ``concurrency`` identities at a time, their starts spaced by ``1 / rate`` seconds at least.
    """
    stats: Counter[str] = Counter()
    aim = [target]
    started = time.monotonic()
    next_start = [trio.current_time()]

    async def worker() -> None:
        while stats["attempted"] < peers:
            stats["attempted"] += 1
            start = max(trio.current_time(), next_start[0])
            next_start[0] = start + 1.0 / rate
            await trio.sleep_until(start)
            try:
                await churn_one(aim[0], stats)
            except Exception as exc:
                stats["failed"] += 1
                stats[f"failed.{type(exc).__name__}"] += 1

    async def churn() -> None:
        async with trio.open_nursery() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        stats["done"] = 1
        stats["seconds"] = round(time.monotonic() - started)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(churn)
        announce({"ready": True})
        while (command := await aread_command()) is not None:
            kind = command.get("cmd")
            if kind == "target":
                aim[0] = command["addr"]
                announce({"ok": True})
            elif kind == "stats":
                announce({"ok": True, "elapsed": time.monotonic() - started, **stats})
            else:
                announce({"ok": False, "error": f"unknown command {command!r}"})
        nursery.cancel_scope.cancel()


# -- the parent: processes ----------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """``VmRSS`` of process ``pid`` in MB (10^6 bytes), or ``None`` once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return None if match is None else int(match.group(1)) * 1024 / 1e6


class RssSampler:
    """Samples one process's RSS every :data:`RSS_PERIOD` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RSS_PERIOD):
            value = rss_mb(self.pid)
            if value is None:
                return
            with self._lock:
                self._peak = max(self._peak, value)

    def reset(self) -> float:
        """Start a new peak window; returns the RSS now (0 if the process is gone)."""
        now = rss_mb(self.pid) or 0.0
        with self._lock:
            self._peak = now
        return now

    def peak(self) -> float:
        """The highest RSS since :meth:`reset`."""
        with self._lock:
            return self._peak

    def stop(self) -> None:
        """End the sampling thread."""
        self._stop.set()
        self._thread.join(timeout=1.0)


@dataclass
class Running:
    """A child started by :func:`benchmarks.netproc.spawn`, with the stack that ends it."""

    child: Child
    ready: dict[str, Any]
    stack: contextlib.ExitStack
    log: Path

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.child.process.poll() is None

    def close(self) -> int | None:
        """End and reap the child; returns its exit status."""
        self.stack.close()
        return self.child.process.returncode

    def last_exception(self) -> str:
        """The last exception line of its stderr log ("" if none)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        pattern = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b.*")
        # Exception groups indent their members behind "|" and "+-" rules.
        stripped = (line.strip().lstrip("|+- ").strip() for line in lines)
        found = [line for line in stripped if pattern.match(line)]
        return found[-1][:300] if found else ""


def start(args: Sequence[str], name: str, logs: Path, *, cpu: int | None = None) -> Running:
    """Start ``python -m benchmarks.bench_soak <args>``; its stderr goes to a log in ``logs``."""
    stack = contextlib.ExitStack()
    log = logs / f"{name}-{time.monotonic_ns()}.log"
    handle: IO[str] = stack.enter_context(log.open("w"))
    try:
        child, ready = stack.enter_context(
            spawn(["benchmarks.bench_soak", *args], name, cpu=cpu, stderr=handle)
        )
    except BaseException:
        stack.close()
        raise
    return Running(child, ready, stack, log)


@dataclass
class Mark:
    """The subscriber's counts at one moment."""

    t: float
    received: int
    lost: int
    duplicates: int


def mark(subscriber: Running) -> Mark:
    """Ask the subscriber for its counts."""
    answer = subscriber.child.request({"cmd": "mark"}, ANSWER_TIMEOUT)
    return Mark(answer["t"], answer["received"], answer["lost"], answer["duplicates"])


def rate_between(a: Mark, b: Mark) -> float:
    """Messages per second received from ``a`` to ``b``."""
    return (b.received - a.received) / max(b.t - a.t, 1e-9)


def snapshot(victim: Running) -> dict[str, Any] | None:
    """The victim's counters and gauges, or ``None`` if it does not answer in time."""
    try:
        return victim.child.request({"cmd": "snapshot"}, ANSWER_TIMEOUT)
    except ChildFailed:
        return None


@dataclass
class AttackResult:
    """What one attack did to the victim and the legitimate link."""

    name: str
    rate_before: float
    rate_during: float
    rate_after: float
    restarted: str
    lost: int
    duplicates: int
    rss_start: float
    rss_peak: float
    survived: bool
    exit_reason: str
    moved: dict[str, int]
    attributed: dict[str, int]
    churn_connected: int
    churn_failed: int
    attacker: dict[str, Any]
    max_send_wait: float | None
    answered: bool


@dataclass
class Settings:
    """The phase lengths and counts of one soak run."""

    attacks: list[str]
    peers: int
    rate: float
    churn: int
    churn_rate: float
    baseline_seconds: float
    attack_seconds: float
    budget_mb: float
    churn_wait: float
    pin: bool = True


@dataclass
class Soak:
    """The running children of one soak, restarted when the victim dies."""

    settings: Settings
    logs: Path
    victim: Running | None = None
    subscriber: Running | None = None
    churner: Running | None = None
    sampler: RssSampler | None = None
    exits: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)

    def start_victim(self) -> None:
        """Start the victim and its subscriber (and aim the churner at the new victim)."""
        self.victim = start(
            ["--role", "victim", "--rate", str(self.settings.rate)], "victim", self.logs
        )
        self.sampler = RssSampler(self.victim.child.process.pid)
        addr = self.victim.ready["addr"]
        self.subscriber = start(["--role", "subscriber", "--target", addr], "subscriber", self.logs)
        if self.churner is not None:
            self.churner.child.request({"cmd": "target", "addr": addr}, ANSWER_TIMEOUT)

    def start_churner(self) -> None:
        """Start the churner against the current victim."""
        assert self.victim is not None
        s = self.settings
        self.churner = start(
            [
                "--role",
                "churner",
                "--target",
                self.victim.ready["addr"],
                "--peers",
                str(s.peers),
                "--churn",
                str(s.churn),
                "--churn-rate",
                str(s.churn_rate),
            ],
            "churner",
            self.logs,
        )

    def ensure_victim(self) -> None:
        """Restart the victim (and subscriber) if it exited; record why it did."""
        assert self.victim is not None
        assert self.subscriber is not None
        if self.victim.alive and self.subscriber.alive:
            return
        self.stop_victim()
        self.start_victim()

    def stop_victim(self) -> None:
        """End the victim and the subscriber."""
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None
        for running in (self.subscriber, self.victim):
            if running is not None:
                running.close()
        self.victim = self.subscriber = None

    def close(self) -> None:
        """End every child (the churner last)."""
        self.stop_victim()
        if self.churner is not None:
            self.churner.close()
            self.churner = None

    def churn_stats(self) -> dict[str, Any]:
        """The churner's counts ({} if it does not answer)."""
        if self.churner is None:
            return {}
        try:
            return self.churner.child.request({"cmd": "stats"}, ANSWER_TIMEOUT)
        except ChildFailed:
            return {}

    def watch(self, seconds: float) -> bool:
        """Sleep ``seconds`` while watching the victim; False as soon as it exited."""
        assert self.victim is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.victim.alive:
                return False
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
        return self.victim.alive

    def parts(self) -> tuple[Running, Running, RssSampler]:
        """The running victim, subscriber and RSS sampler (after :meth:`start_victim`)."""
        if self.victim is None or self.subscriber is None or self.sampler is None:
            raise BenchmarkFailure("the victim is not running")
        return self.victim, self.subscriber, self.sampler

    def run_attack(self, name: str) -> AttackResult:
        """One attack: a baseline window, the attack, a recovery window, and what it changed.

        A victim that exited, or whose link does not carry half the publisher's rate in the
        baseline window (a previous attack's effect outlasted it), is restarted first, so each
        attack starts from a healthy link.
        """
        self.ensure_victim()
        s = self.settings
        victim, subscriber, sampler = self.parts()
        restarted = ""
        summary(f"{name}: baseline {s.baseline_seconds:g} s")
        m0 = mark(subscriber)
        self.watch(s.baseline_seconds)
        m1 = mark(subscriber)
        if rate_between(m0, m1) < 0.5 * s.rate:
            restarted = (
                f"the victim was restarted first: its link carried {rate_between(m0, m1):,.0f} "
                "msg/s in the baseline window"
            )
            summary(f"{name}: {restarted}")
            self.restarts.append(f"before {name}: link at {rate_between(m0, m1):,.0f} msg/s")
            self.stop_victim()
            self.start_victim()
            victim, subscriber, sampler = self.parts()
        quiet = snapshot(victim)
        m0 = mark(subscriber)
        self.watch(s.baseline_seconds)
        m1 = mark(subscriber)
        before = snapshot(victim)
        churn_before = self.churn_stats()
        rss_start = sampler.reset()
        summary(f"{name}: attacking {s.attack_seconds:g} s (victim RSS {rss_start:.0f} MB)")
        attacker_cmd = [
            sys.executable,
            "-m",
            f"benchmarks.soak_attacks.{name}",
            "--target",
            victim.ready["addr"],
            "--route",
            WIRE_ROUTE,
            "--seconds",
            str(s.attack_seconds),
            "--budget-mb",
            str(s.budget_mb),
        ]
        log = self.logs / f"attack-{name}.log"
        with (
            log.open("w") as err,
            subprocess.Popen(
                attacker_cmd, stdout=subprocess.PIPE, stderr=err, text=True
            ) as attacker,
        ):
            try:
                alive = self.watch(s.attack_seconds)
                m2 = mark(subscriber)
                try:
                    out, _ = attacker.communicate(timeout=ATTACK_GRACE)
                except subprocess.TimeoutExpired:
                    attacker.kill()
                    out, _ = attacker.communicate()
            finally:
                if attacker.poll() is None:
                    attacker.kill()
                    attacker.wait()
        m3 = mark(subscriber)
        churn_after = self.churn_stats()
        alive = self.watch(AFTER_SECONDS) and alive
        after = snapshot(victim) if victim.alive else None
        peak = sampler.peak()
        self.watch(max(s.baseline_seconds - AFTER_SECONDS, 0.0))
        m4 = mark(subscriber)
        report: dict[str, Any] = {}
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    report = __import__("json").loads(line)
                break
        if not report:
            report = {"error": f"no report (exit {attacker.returncode}); see {log}"}
        moved: dict[str, int] = {}
        attributed: dict[str, int] = {}
        if before is not None and after is not None:
            b, a = before["counters"], after["counters"]
            moved = {k: a[k] - b.get(k, 0) for k in sorted(a) if a[k] != b.get(k, 0)}
            # The churn moves counters too: what moved more than it did in the baseline window
            # (scaled to the attack's length) is the attack's.
            q = quiet["counters"] if quiet is not None else b
            scale = (m2.t - m1.t + AFTER_SECONDS) / max(m1.t - m0.t, 1e-9)
            for key, delta in moved.items():
                if key.startswith(BACKGROUND_COUNTERS):
                    continue
                expected = (b.get(key, 0) - q.get(key, 0)) * scale
                if delta - expected >= max(1.0, 0.5 * expected):
                    attributed[key] = round(delta - expected)
        reason = ""
        if not victim.alive:
            reason = victim.last_exception() or f"exit status {victim.child.process.poll()}"
            self.exits.append(f"{name}: {reason}")
        return AttackResult(
            name=name,
            rate_before=rate_between(m0, m1),
            rate_during=rate_between(m1, m2),
            rate_after=rate_between(m3, m4),
            restarted=restarted,
            lost=m2.lost - m1.lost,
            duplicates=m2.duplicates - m1.duplicates,
            rss_start=rss_start,
            rss_peak=peak,
            survived=alive and victim.alive,
            exit_reason=reason,
            moved=moved,
            attributed=attributed,
            churn_connected=churn_after.get("connected", 0) - churn_before.get("connected", 0),
            churn_failed=churn_after.get("failed", 0) - churn_before.get("failed", 0),
            attacker=report,
            max_send_wait=None if after is None else after.get("max_send_wait"),
            answered=after is not None,
        )


# -- output ---------------------------------------------------------------------------------------


def emit_attack(result: AttackResult) -> bool:
    """Print the figures of one attack; True when it met every target."""
    prefix = f"soak.{result.name}"
    ratio_ok = (
        result.rate_before > 0 and result.rate_during >= TARGET_RATE_RATIO * result.rate_before
    )
    growth = max(result.rss_peak - result.rss_start, 0.0)
    met = {
        "rate": ratio_ok,
        "loss": result.lost == 0 and result.duplicates == 0,
        "rss": growth <= TARGET_RSS_MB,
        "survived": result.survived,
        "counter": bool(result.attributed),
    }
    emit(
        f"{prefix}.rate_before",
        result.rate_before,
        note="legitimate reliable link, no attack"
        + (f"; {result.restarted}" if result.restarted else ""),
    )
    emit(
        f"{prefix}.rate_during",
        result.rate_during,
        baseline=f"{prefix}.rate_before",
        baseline_value=result.rate_before,
        note=f"target >= {TARGET_RATE_RATIO:g} x rate_before; the victim's longest send() wait "
        f"{result.max_send_wait} s",
        target=TARGET_RATE_RATIO,
        met=met["rate"],
    )
    emit(
        f"{prefix}.rate_after",
        result.rate_after,
        baseline=f"{prefix}.rate_before",
        baseline_value=result.rate_before,
        note="the link after the attacker ended (recovery window)",
    )
    emit(
        f"{prefix}.reliable_lost",
        result.lost,
        unit="messages",
        note=f"gaps on the reliable link during the attack; duplicates {result.duplicates}",
        duplicates=result.duplicates,
        target=0,
        met=met["loss"],
    )
    emit(
        f"{prefix}.rss_growth",
        growth,
        unit="MB",
        note=f"victim VmRSS peak {result.rss_peak:.0f} MB during the attack and "
        f"{AFTER_SECONDS:g} s after, from {result.rss_start:.0f} MB",
        target=TARGET_RSS_MB,
        met=met["rss"],
    )
    emit(
        f"{prefix}.survived",
        1.0 if result.survived else 0.0,
        unit="bool",
        note=result.exit_reason or ("answered" if result.answered else "alive, did not answer"),
        target=1,
        met=met["survived"],
    )
    emit(
        f"{prefix}.counters_moved",
        len(result.attributed),
        unit="counters",
        note="victim counters that moved during the attack by at least 1.5 x what the churn "
        "moves them (the baseline window's rate), the node's periodic work aside (attributed: "
        "the excess); moved: every change",
        attributed=result.attributed,
        moved=result.moved,
        met=met["counter"],
    )
    emit(
        f"{prefix}.churn_failed",
        result.churn_failed,
        unit="peers",
        note=f"churned identities that failed during the attack ({result.churn_connected} "
        "connected): newcomers kept out by the attacker show here",
        connected=result.churn_connected,
    )
    attacker = result.attacker
    stat = attacker.get("stat")
    emit(
        f"{prefix}.attacker",
        float(stat) if isinstance(stat, int | float) else None,
        unit=str(attacker.get("unit", "")),
        note="the attacker's own report",
        report=attacker,
    )
    misses = [k for k, ok in met.items() if not ok]
    summary(
        f"[{'MET ' if not misses else 'MISS'}] {result.name}: rate {result.rate_during:,.0f} vs "
        f"{result.rate_before:,.0f} msg/s (after: {result.rate_after:,.0f}), lost {result.lost}, "
        f"RSS +{growth:.0f} MB, "
        f"{'survived' if result.survived else 'EXITED: ' + result.exit_reason}, "
        f"counters moved: {', '.join(result.attributed) or 'none'}"
        + (f" (missed: {', '.join(misses)})" if misses else "")
    )
    return not misses


def emit_churn(soak: Soak, stats: dict[str, Any]) -> None:
    """Print the churn figures and the victim's exits."""
    connected = stats.get("connected")
    elapsed = float(stats.get("elapsed", 0.0))
    failures = {k: v for k, v in stats.items() if k.startswith("failed.")}
    emit(
        "soak.churn.peers",
        None if connected is None else float(connected),
        unit="peers",
        note=f"distinct identities that connected, of {soak.settings.peers} "
        f"({stats.get('attempted', 0)} attempted, {stats.get('identified', 0)} identified, "
        f"{stats.get('dht_answers', 0)} FIND_NODE answers)",
        failures=failures,
    )
    seconds = float(stats.get("seconds", elapsed))
    emit(
        "soak.churn.rate",
        (connected or 0) / seconds if seconds else None,
        unit="peers/s",
        note=f"over {seconds:.0f} s, {soak.settings.churn} at a time",
    )
    emit(
        "soak.victim.exits",
        float(len(soak.exits)),
        unit="exits",
        note="; ".join(soak.exits) or "the victim never exited",
        exits=soak.exits,
        target=0,
        met=not soak.exits,
    )
    emit(
        "soak.victim.restarts",
        float(len(soak.restarts)),
        unit="restarts",
        note="victims restarted (alive) because the link had not recovered from an attack: "
        + ("; ".join(soak.restarts) or "none"),
        restarts=soak.restarts,
    )


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--role`` is how the benchmark starts its children)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_soak",
        description="A bootstrap node under churn and hostile peers, a legitimate link measured.",
    )
    parser.add_argument("--quick", action="store_true", help="short phases, 200 peers")
    parser.add_argument("--attacks", default=None, help=f"comma-separated ({','.join(ATTACKS)})")
    parser.add_argument("--peers", type=int, default=None, help="identities churned (5000)")
    parser.add_argument("--rate", type=float, default=None, help="legit link msg/s (500)")
    parser.add_argument("--churn", type=int, default=None, help="identities at a time (4)")
    parser.add_argument("--churn-rate", type=float, default=None, help="identities/s (25)")
    parser.add_argument("--baseline-seconds", type=float, default=None)
    parser.add_argument("--attack-seconds", type=float, default=None)
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=384.0,
        help="most memory an attacker tries to make the victim hold (protects the machine)",
    )
    parser.add_argument(
        "--churn-wait",
        type=float,
        default=None,
        help="seconds to wait after the attacks for the churn to finish",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--role",
        choices=("main", "victim", "subscriber", "churner"),
        default="main",
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--target", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "peers": 200 if quick else 5000,
        "rate": 200.0 if quick else 500.0,
        "churn": 2 if quick else 4,
        "churn_rate": 10.0 if quick else 25.0,
        "baseline_seconds": 3.0 if quick else 10.0,
        "attack_seconds": 4.0 if quick else 15.0,
        "churn_wait": 10.0 if quick else 300.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.attacks is None:
        args.attacks = list(ATTACKS)
    else:
        args.attacks = [a for a in args.attacks.split(",") if a]
        unknown = [a for a in args.attacks if a not in ATTACKS]
        if unknown:
            parser.error(f"unknown attacks {unknown}; known: {', '.join(ATTACKS)}")
    for key in ("peers", "churn"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1")
    for key in ("rate", "churn_rate", "baseline_seconds", "attack_seconds"):
        if not getattr(args, key) > 0:
            parser.error(f"--{key.replace('_', '-')} must be > 0")
    if args.role in ("subscriber", "churner") and args.target is None:
        parser.error(f"--role {args.role} needs --target")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_soak(settings: Settings) -> bool:
    """Run every attack in turn under churn; print the figures; True when all targets are met."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="dndm-soak-") as tmp:
        soak = Soak(settings, Path(tmp))
        try:
            soak.start_victim()
            soak.start_churner()
            for name in settings.attacks:
                ok = emit_attack(soak.run_attack(name)) and ok
            deadline = time.monotonic() + settings.churn_wait
            stats = soak.churn_stats()
            while not stats.get("done") and time.monotonic() < deadline:
                soak.ensure_victim()
                if soak.victim is not None and not soak.watch(2.0):
                    assert soak.victim is not None
                    reason = soak.victim.last_exception() or "exited"
                    soak.exits.append(f"churn: {reason}")
                stats = soak.churn_stats()
            if soak.victim is not None and not soak.victim.alive:
                reason = soak.victim.last_exception() or "exited"
                if not any(e.endswith(reason) for e in soak.exits[-1:]):
                    soak.exits.append(f"churn: {reason}")
            emit_churn(soak, stats)
            ok = ok and not soak.exits
        finally:
            soak.close()
    return ok


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM raises :class:`KeyboardInterrupt` too, so the cleanup runs on either signal."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """The benchmark's entry point (and its children's)."""
    args = parse_args(argv)
    if args.role == "victim":
        trio.run(run_victim, args.rate)
        return 0
    if args.role == "subscriber":
        trio.run(run_subscriber, args.target)
        return 0
    if args.role == "churner":
        trio.run(run_churner, args.target, args.peers, args.churn, args.churn_rate)
        return 0
    settings = Settings(
        attacks=args.attacks,
        peers=args.peers,
        rate=args.rate,
        churn=args.churn,
        churn_rate=args.churn_rate,
        baseline_seconds=args.baseline_seconds,
        attack_seconds=args.attack_seconds,
        budget_mb=args.budget_mb,
        churn_wait=args.churn_wait,
    )
    started = time.monotonic()
    try:
        with interrupts_as_keyboard():
            ok = run_soak(settings)
    except BenchmarkFailure as exc:
        summary(f"soak failed: {exc}")
        return 2
    except KeyboardInterrupt:
        summary(f"interrupted after {time.monotonic() - started:.1f} s; every child ended")
        return 130
    summary(f"total {time.monotonic() - started:.1f} s")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
