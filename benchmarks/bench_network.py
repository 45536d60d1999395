"""dndm nodes in two OS processes on 127.0.0.1, against raw py-libp2p streams, zenoh and zmq.

Run it as ``python -m benchmarks.bench_network [--quick]``.  It prints one JSON object per line
on stdout (see :mod:`benchmarks.common`) and a summary with the targets on stderr.

The benchmark (the parent) starts one child process per suite (``--role server --suite ...``,
see :mod:`benchmarks.netproc`): the child publishes, sends or echoes; the parent subscribes,
receives and measures.  Every rate is measured **at the receiver**, from the arrival of the first
chunk of a run to the arrival of its last message, over the messages after that first chunk.
Figures:

* (a) ``oneway64``: 64-byte messages one way (``Tick`` with ``ByteSize() == 64``), in msg/s.
  dndm: the child's intent sends with ``send_many`` (batches of 1024) or with ``await send()``
  per message; the parent's interest has ``overflow="block"`` and depth 8192 (lossless: the
  link's credit is the depth) and reads with ``receive_batch``.
* (b) ``rtt64``: round trip of a 64-byte request and its reply, one at a time: median and p99
  in microseconds over 2000 round trips after 200 warm-up ones.  dndm: the parent publishes the
  request on one route and subscribes the reply on another; the child's subscriber echoes each
  request object on the reply route.
* (c) ``bulk1MiB``: 1 MiB messages (``Tick`` with a 1 MiB random payload, ``ByteSize() ==
  1048576``) one way, in MB/s (10^6 bytes of serialized messages per second).  The dndm
  publisher sends with ``await send()``; the subscriber has depth 3 (block): the publisher puts
  up to the link's credit in messages into one DataBatch, whatever their size, and a batch of
  four 1 MiB messages exceeds the 4 MiB frame limit and breaks the link.

Baselines in the same run, with the same libp2p host settings (``running_host`` from
:mod:`dndm_p2p.host.build`: Noise only, yamux, one connection per peer):

* ``raw``: a py-libp2p stream of our own protocol (``/bench/raw/1.0.0``) carrying the same
  serialized messages, each with a varint length prefix: (a) one ``stream.write`` per message
  (``per_write``) and 1024 messages per write (``batched``); (b) request and reply on one
  stream; (c) one write per 1 MiB message.  The sender writes pre-serialized messages; the
  receiver splits frames with :class:`protocols.framing.FrameReader`, checks every length and
  decodes the first and last message of each read (every message in (c), as dndm does).
* ``zenoh`` (if installed): peer mode, TCP on 127.0.0.1 with an explicit listen and connect
  endpoint, multicast scouting and shared memory off; publishers with congestion control
  ``BLOCK`` (lossless); callback subscribers; the RTT publishers are ``express``.
* ``zmq`` (if installed): PUSH/PULL over tcp://127.0.0.1 for (a) and (c), REQ/REP for (b).

dndm nodes run with ``compression=False``, so every system moves the same bytes (the payloads
are zeros for 64-byte messages: zstd would shrink a batch of them to almost nothing).

With two CPUs or more, the parent runs on one CPU and the child on the other (``--no-pin``
turns this off): left to the scheduler, the two processes share a CPU in some runs and not in
others, and round trips then differ by half.

Each dndm figure names its raw baseline and the ratio ``value / baseline``; zenoh and zmq
figures name the dndm figure and the ratio to it.  For latency a ratio above 1 means slower.
Throughput figures are the best of ``--repeats`` (3) runs after a warm-up run.  Every run checks
what arrived (count, order of sequence numbers, serialized sizes; sender-side counters) and
raises :class:`~benchmarks.common.BenchmarkFailure` when anything is wrong.  ``--quick`` divides
the counts by 10 (RTT and bulk by 4); ``--strict`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import math
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import trio

from benchmarks.common import (
    DEFAULT_REPEATS,
    BenchmarkFailure,
    Measurement,
    check,
    emit,
    emit_skipped,
    make_tick,
    summary,
)
from benchmarks.netproc import (
    Child,
    announce,
    aread_command,
    free_tcp_port,
    pinned,
    read_command,
    spawn,
)
from benchmarks.proto.bench_pb2 import Tick

#: Size of the small messages, in serialized bytes.
SIZE = 64
#: Size of the large messages, in serialized bytes.
BULK_SIZE = 1 << 20
#: Distinct pre-built small messages (seq 1..POOL); also the send_many and raw batch size.
POOL = 1024
BATCH = 1024
#: Distinct pre-built 1 MiB messages.
BULK_POOL = 4
#: Depth of the one-way subscriber (the link's credit window), and its receive_batch size.
DEPTH = 8192
RECEIVE_BATCH = 8192
#: Depth of the request and reply subscribers of the RTT test.
RTT_DEPTH = 64
#: Depth of the bulk subscriber: a batch of up to this many 1 MiB messages must fit 4 MiB.
BULK_DEPTH = 3
#: Largest frame the raw receiver accepts.
RAW_MAX_FRAME = BULK_SIZE + 1024
RAW_PROTOCOL = "/bench/raw/1.0.0"

ROUTE_ONEWAY = "bench.net.oneway"
ROUTE_BULK = "bench.net.bulk"
ROUTE_REQ = "bench.net.req"
ROUTE_REP = "bench.net.rep"
ZKEY_ONEWAY = "bench/net/oneway"
ZKEY_BULK = "bench/net/bulk"
ZKEY_REQ = "bench/net/req"
ZKEY_REP = "bench/net/rep"

#: Targets checked in the summary.
TARGET_ONEWAY = 250_000.0
TARGET_RTT_EXTRA_US = 100.0
TARGET_BULK_RATIO = 0.8

#: Seconds allowed for link set-up and for each command answer that is not a timed run.
SETUP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Counts:
    """Messages per run (and runs) of every test."""

    oneway: int = 500_000
    awaited: int = 500_000
    raw_per_write: int = 20_000
    rtt: int = 2_000
    rtt_warmup: int = 200
    bulk: int = 200
    repeats: int = DEFAULT_REPEATS

    def warmup(self, count: int) -> int:
        """Messages of the untimed warm-up run before runs of ``count``."""
        return max(count // 5, 1)

    def quick(self) -> Counts:
        """The ``--quick`` counts."""
        return replace(
            self,
            oneway=self.oneway // 10,
            awaited=self.awaited // 10,
            raw_per_write=self.raw_per_write // 10,
            rtt=self.rtt // 4,
            rtt_warmup=self.rtt_warmup // 4,
            bulk=self.bulk // 4,
        )


def run_timeout(count: int, per_second: float = 2_000.0) -> float:
    """Seconds allowed for one run of ``count`` messages (generous: a hang, not a slow run)."""
    return 30.0 + count / per_second


# -- messages -----------------------------------------------------------------------------------

_POOLS: dict[int, list[Tick]] = {}


def pool(size: int) -> list[Tick]:
    """The distinct pre-built messages of ``size`` bytes, seq 1..n (built once per process).

    Small messages carry zero bytes; 1 MiB messages random ones (incompressible anywhere).
    """
    if size not in _POOLS:
        now = time.time_ns()
        if size == BULK_SIZE:
            msgs = []
            for seq in range(1, BULK_POOL + 1):
                msg = make_tick(seq, size, now)
                msg.payload = os.urandom(len(msg.payload))
                msgs.append(msg)
        else:
            msgs = [make_tick(seq, size, now) for seq in range(1, POOL + 1)]
        for msg in msgs:
            check(msg.ByteSize() == size, f"pool message is {msg.ByteSize()} bytes, not {size}")
        _POOLS[size] = msgs
    return _POOLS[size]


def wire_pool(size: int) -> list[bytes]:
    """The serialized messages of :func:`pool`."""
    return [msg.SerializeToString() for msg in pool(size)]


def framed_pool(size: int) -> list[bytes]:
    """The serialized messages of :func:`pool`, each with its varint length prefix."""
    from protocols.framing import encode_frame

    return [encode_frame(body) for body in wire_pool(size)]


def expected_seq(index: int, size: int) -> int:
    """The seq of the ``index``-th (0-based) message of a run that cycles through the pool."""
    return index % len(pool(size)) + 1


def check_ends(label: str, first: Tick, last: Tick, index: int, n: int, size: int) -> None:
    """Check the first and last of ``n`` messages that arrived from position ``index`` on."""
    check(
        first.seq == expected_seq(index, size) and last.seq == expected_seq(index + n - 1, size),
        f"{label}: messages {index}..{index + n - 1} have seq {first.seq}..{last.seq}, "
        f"expected {expected_seq(index, size)}..{expected_seq(index + n - 1, size)} "
        "(lost, duplicated or reordered messages)",
    )
    check(
        first.ByteSize() == size and last.ByteSize() == size,
        f"{label}: got {first.ByteSize()}/{last.ByteSize()}-byte messages, expected {size}",
    )


def check_each(label: str, msgs: Sequence[Tick], index: int, size: int) -> None:
    """Check the seq and payload length of every message (the 1 MiB ones).

    ``ByteSize()`` serializes a message, so it is checked on the first and last only (by
    :func:`check_ends`); the payload length is as good for messages of the pool's shape.
    """
    payload = len(pool(size)[0].payload)
    for i, msg in enumerate(msgs):
        check(
            msg.seq == expected_seq(index + i, size) and len(msg.payload) == payload,
            f"{label}: message {index + i} has seq {msg.seq} and a {len(msg.payload)}-byte "
            f"payload, expected {expected_seq(index + i, size)} and {payload}",
        )


@dataclass(slots=True)
class Arrivals:
    """Receiver-side timing of one run: the first chunk's and the last message's arrival."""

    label: str
    count: int = 0
    first_chunk: int = 0
    t_first: float = 0.0
    t_last: float = 0.0

    def arrived(self, n: int, now: float) -> None:
        """Record a chunk of ``n`` messages that arrived at ``now``."""
        if not self.count:
            self.t_first, self.first_chunk = now, n
        self.count += n
        self.t_last = now

    def rate(self) -> float:
        """Messages per second after the first chunk."""
        span = self.t_last - self.t_first
        check(
            span > 0 and self.count > self.first_chunk,
            f"{self.label}: the whole run arrived in one chunk; use a larger count",
        )
        return (self.count - self.first_chunk) / span


@dataclass(frozen=True, slots=True)
class Latency:
    """Round-trip times of one run, in microseconds."""

    samples_us: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median round trip."""
        return statistics.median(self.samples_us)

    @property
    def p99(self) -> float:
        """The 99th percentile (nearest rank)."""
        return self.percentile(0.99)

    def percentile(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1), nearest rank."""
        ordered = sorted(self.samples_us)
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]

    def describe(self) -> str:
        """Spread of the samples, for a JSON note."""
        ordered = sorted(self.samples_us)
        return (
            f"{len(ordered)} round trips: min {ordered[0]:.0f}, p10 {self.percentile(0.1):.0f}, "
            f"median {self.median:.0f}, p99 {self.p99:.0f}, max {ordered[-1]:.0f} us"
        )


def latency_from_ns(samples_ns: Sequence[int]) -> Latency:
    """A :class:`Latency` from nanosecond samples."""
    return Latency(tuple(ns / 1000 for ns in samples_ns))


def best_of(label: str, rates: list[float], count: int) -> Measurement:
    """The best of ``rates`` as a :class:`Measurement` (and a progress line on stderr)."""
    check(bool(rates), f"{label}: no runs")
    return Measurement(max(rates), tuple(rates), "best", count)


def progress(label: str, run: int, runs: int, value: float, unit: str) -> None:
    """One progress line on stderr."""
    summary(f"  {label} run {run}/{runs}: {value:,.1f} {unit}")


@dataclass(slots=True)
class SuiteResults:
    """What one suite measured: throughputs (msg/s or MB/s) and latencies, by test name."""

    rates: dict[str, Measurement] = field(default_factory=dict)
    latencies: dict[str, Latency] = field(default_factory=dict)
    info: str = ""


# -- dndm -----------------------------------------------------------------------------------------


def _dndm_config(name: str) -> Any:
    """Both nodes of the suite.  A publisher never waits for a remote subscriber (it drops for
    it past its queue bound), so the lossless one-way runs need a publisher that chooses to
    buffer a whole run for its trusted subscriber: queue bound and memory budgets sized to the
    largest run (500,000 64-byte messages; 200 MiB of 1 MiB messages)."""
    from dndm_p2p.config import NodeConfig, ResourceLimits

    mib = 1 << 20
    limits = ResourceLimits(
        peer_memory=1024 * mib,
        node_memory=1024 * mib,
        link_depth=1 << 20,
        link_queue_bytes=512 * mib,
        peer_queue_slots=1 << 21,
        node_queue_slots=1 << 21,
    )
    return NodeConfig(name=name, compression=False, link_queue_depth=1 << 20, limits=limits)


async def dndm_server() -> None:
    """The child of the dndm suite: a node that publishes, sends on command and echoes."""
    from dndm_p2p.node.node import Node

    async with Node(_dndm_config("bench-server")) as node:
        oneway = node.publish(ROUTE_ONEWAY, Tick)
        bulk = node.publish(ROUTE_BULK, Tick)
        replies = node.publish(ROUTE_REP, Tick)
        requests = node.subscribe(ROUTE_REQ, Tick, depth=RTT_DEPTH, overflow="block")

        async def echo() -> None:
            async for msg in requests:
                await replies.send(msg)

        async def send(intent: Any, mode: str, count: int, size: int) -> dict[str, Any]:
            with trio.fail_after(SETUP_TIMEOUT):
                await intent.wait_interest()
            msgs = pool(size)
            before = intent.stats
            gc.collect()
            start = time.perf_counter()
            if mode == "batched":
                full, rest = divmod(count, len(msgs))
                send_many = intent.send_many
                for _ in range(full):
                    await send_many(msgs)
                if rest:
                    await send_many(msgs[:rest])
            else:
                send_one = intent.send
                n = len(msgs)
                for i in range(count):
                    await send_one(msgs[i % n])
            seconds = time.perf_counter() - start
            after = intent.stats
            return {
                "ok": True,
                "sent": after.sent - before.sent,
                "unrouted": after.unrouted - before.unrouted,
                "seconds": seconds,
            }

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            announce({"ready": True, "addr": node.addrs[0], "peer": node.peer_id})
            while (command := await aread_command()) is not None:
                try:
                    kind = command["cmd"]
                    if kind == "oneway":
                        answer = await send(oneway, command["mode"], command["count"], SIZE)
                    elif kind == "bulk":
                        answer = await send(bulk, "awaited", command["count"], BULK_SIZE)
                    elif kind == "rtt_ready":
                        with trio.fail_after(SETUP_TIMEOUT):
                            await replies.wait_interest()
                            await requests.wait_intent()
                        answer = {"ok": True}
                    elif kind == "stats":
                        answer = {
                            "ok": True,
                            "requests": requests.stats.received,
                            "requests_dropped": requests.stats.dropped,
                            "replies_unrouted": replies.stats.unrouted,
                            "errors": [str(e) for e in node.errors],
                        }
                    else:
                        answer = {"ok": False, "error": f"unknown command {kind!r}"}
                except Exception as exc:
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                announce(answer)
            nursery.cancel_scope.cancel()


async def dndm_receive(
    interest: Any,
    count: int,
    size: int,
    label: str,
    errors: Callable[[], Sequence[object]] = tuple,
) -> Arrivals:
    """Receive exactly ``count`` messages from ``interest``, checking them; time the arrivals.

    ``errors`` returns the node's errors: when nothing arrives for a second and the node
    reported one (a link that broke, a peer's error result), the run fails at once instead of
    waiting for its timeout.
    """
    arrivals = Arrivals(label)
    receive_batch = interest.receive_batch
    every = size == BULK_SIZE
    known = len(errors())
    while arrivals.count < count:
        with trio.move_on_after(1.0) as idle:
            batch = await receive_batch(RECEIVE_BATCH)
        if idle.cancelled_caught:
            reported = list(errors())
            check(
                len(reported) <= known,
                f"{label}: stalled after {arrivals.count} of {count}: {reported[known:]}",
            )
            continue
        now = time.perf_counter()
        n = len(batch)
        check_ends(label, batch[0], batch[-1], arrivals.count, n, size)
        if every:
            check_each(label, batch, arrivals.count, size)
        arrivals.arrived(n, now)
    check(arrivals.count == count, f"{label}: received {arrivals.count} messages, sent {count}")
    return arrivals


async def dndm_client(
    child: Child, ready: dict[str, Any], counts: Counts, *, rtt_only: bool = False
) -> SuiteResults:
    """The parent's side of the dndm suite: subscribe, receive, measure (only (b) if asked)."""
    from dndm_p2p.node.node import Node

    results = SuiteResults()
    async with Node(_dndm_config("bench-client")) as node:
        with trio.fail_after(SETUP_TIMEOUT):
            await node.connect(ready["addr"])
        oneway = node.subscribe(ROUTE_ONEWAY, Tick, depth=DEPTH, overflow="block")
        bulk = node.subscribe(ROUTE_BULK, Tick, depth=BULK_DEPTH, overflow="block")
        requests = node.publish(ROUTE_REQ, Tick)
        replies = node.subscribe(ROUTE_REP, Tick, depth=RTT_DEPTH, overflow="block")
        with trio.fail_after(SETUP_TIMEOUT):
            await oneway.wait_intent()
            await bulk.wait_intent()
            await replies.wait_intent()
            await requests.wait_interest()

        async def one_way(
            interest: Any, cmd: dict[str, Any], count: int, size: int, label: str
        ) -> float:
            gc.collect()
            child.send({**cmd, "count": count})
            with trio.fail_after(run_timeout(count)):
                arrivals = await dndm_receive(interest, count, size, label, lambda: node.errors)
            answer = await child.areceive(SETUP_TIMEOUT)
            check(
                answer["sent"] == count and answer["unrouted"] == 0,
                f"{label}: the publisher sent {answer['sent']} (unrouted {answer['unrouted']}) "
                f"of {count}",
            )
            stats = interest.stats
            check(stats.dropped == 0, f"{label}: the subscriber dropped {stats.dropped}")
            return arrivals.rate()

        tests: list[tuple[str, Any, dict[str, Any], int, int]] = [
            (
                "oneway64.send_many",
                oneway,
                {"cmd": "oneway", "mode": "batched"},
                counts.oneway,
                SIZE,
            ),
            ("oneway64.send", oneway, {"cmd": "oneway", "mode": "awaited"}, counts.awaited, SIZE),
            ("bulk1MiB", bulk, {"cmd": "bulk"}, counts.bulk, BULK_SIZE),
        ]
        for name, interest, cmd, count, size in [] if rtt_only else tests:
            label = f"dndm.{name}"
            await one_way(interest, cmd, counts.warmup(count), size, f"{label} warm-up")
            rates = []
            for run in range(counts.repeats):
                rate = await one_way(interest, cmd, count, size, label)
                if size == BULK_SIZE:
                    rate = rate * size / 1e6
                rates.append(rate)
                progress(label, run + 1, counts.repeats, rate, "MB/s" if size > SIZE else "msg/s")
            results.rates[name] = best_of(label, rates, count)

        await child.arequest({"cmd": "rtt_ready"}, SETUP_TIMEOUT)
        msgs = pool(SIZE)
        samples: list[int] = []
        gc.collect()
        with trio.fail_after(run_timeout(counts.rtt, 200)):
            for i in range(counts.rtt_warmup + counts.rtt):
                msg = msgs[i % POOL]
                start = time.perf_counter_ns()
                await requests.send(msg)
                reply = await replies.receive()
                elapsed = time.perf_counter_ns() - start
                check(
                    reply.seq == msg.seq and reply.ByteSize() == SIZE,
                    f"dndm.rtt64: reply {reply.seq} ({reply.ByteSize()} bytes) to {msg.seq}",
                )
                if i >= counts.rtt_warmup:
                    samples.append(elapsed)
        results.latencies["rtt64"] = latency_from_ns(samples)
        summary(f"  dndm.rtt64: {results.latencies['rtt64'].describe()}")
        stats = await child.arequest({"cmd": "stats"}, SETUP_TIMEOUT)
        total = counts.rtt_warmup + counts.rtt
        check(
            stats["requests"] == total and stats["requests_dropped"] == 0,
            f"dndm.rtt64: the echo got {stats['requests']} requests of {total}",
        )
        check(stats["replies_unrouted"] == 0, f"dndm.rtt64: {stats['replies_unrouted']} unrouted")
        check(not node.errors, f"dndm: the client node reported errors: {list(node.errors)}")
        check(not stats["errors"], f"dndm: the server node reported errors: {stats['errors']}")
        for handle in (oneway, bulk, requests, replies):
            handle.close()
    return results


# -- raw py-libp2p streams ---------------------------------------------------------------------


async def raw_server() -> None:
    """The child of the raw suite: a libp2p host that answers our raw protocol's streams."""
    from libp2p.custom_types import TProtocol

    from dndm_p2p.host.build import listen_addrs, running_host
    from dndm_p2p.host.identity import generate_identity

    async with running_host(generate_identity()) as host:
        host.set_stream_handler(TProtocol(RAW_PROTOCOL), raw_handler)
        announce({"ready": True, "addr": str(listen_addrs(host)[0])})
        while await aread_command() is not None:
            announce({"ok": True})


async def raw_handler(stream: Any) -> None:
    """Serve one raw stream: a JSON header frame, then echo or send on request.

    Header ``{"mode": "echo"}``: echo every frame, one write each, until the stream ends.
    Header ``{"mode": "send", "size": S, "per_write": K}``: for every request frame
    ``{"count": N}``, write N framed ``S``-byte messages, K per write.
    """
    from protocols.framing import FrameReader, encode_frame

    reader = FrameReader(stream, RAW_MAX_FRAME)
    write = stream.write
    try:
        header_body = await reader.read_frame()
        if header_body is None:
            return
        header = json.loads(header_body)
        if header["mode"] == "echo":
            while (body := await reader.read_frame()) is not None:
                await write(encode_frame(body))
            return
        frames = framed_pool(header["size"])
        per_write = header["per_write"]
        check(len(frames) % per_write == 0, "per_write must divide the pool size")
        chunks = [b"".join(frames[i : i + per_write]) for i in range(0, len(frames), per_write)]
        while (request := await reader.read_frame()) is not None:
            count = json.loads(request)["count"]
            gc.collect()
            full, rest = divmod(count, per_write)
            n = len(chunks)
            for i in range(full):
                await write(chunks[i % n])
            if rest:
                await write(b"".join(frames[full * per_write % len(frames) :][:rest]))
    except Exception as exc:
        summary(f"raw server: stream failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await stream.close()


async def raw_receive(reader: Any, count: int, size: int, label: str) -> Arrivals:
    """Read exactly ``count`` frames of ``size`` bytes, checking them; time the arrivals."""
    arrivals = Arrivals(label)
    read_frames = reader.read_frames
    parse = Tick.FromString
    every = size == BULK_SIZE
    while arrivals.count < count:
        bodies = await read_frames(RECEIVE_BATCH)
        now = time.perf_counter()
        check(bool(bodies), f"{label}: the stream ended after {arrivals.count} of {count}")
        n = len(bodies)
        check(
            set(map(len, bodies)) == {size},
            f"{label}: frames of {sorted(set(map(len, bodies)))} bytes, expected {size}",
        )
        if every:
            msgs = [parse(body) for body in bodies]
            check_ends(label, msgs[0], msgs[-1], arrivals.count, n, size)
            check_each(label, msgs, arrivals.count, size)
        else:
            check_ends(label, parse(bodies[0]), parse(bodies[-1]), arrivals.count, n, size)
        arrivals.arrived(n, now)
    check(arrivals.count == count, f"{label}: received {arrivals.count} frames, sent {count}")
    check(reader.buffered == 0, f"{label}: {reader.buffered} bytes more than sent")
    return arrivals


async def raw_client(
    child: Child, ready: dict[str, Any], counts: Counts, *, rtt_only: bool = False
) -> SuiteResults:
    """The parent's side of the raw suite (only (b) if asked)."""
    from libp2p.custom_types import TProtocol

    from dndm_p2p.host.build import connect, running_host
    from dndm_p2p.host.identity import generate_identity
    from protocols.framing import FrameReader, encode_frame

    results = SuiteResults()
    protocol = TProtocol(RAW_PROTOCOL)

    def frame_json(obj: dict[str, Any]) -> bytes:
        return encode_frame(json.dumps(obj).encode())

    async with running_host(generate_identity()) as host:
        with trio.fail_after(SETUP_TIMEOUT):
            peer = await connect(host, ready["addr"])
        tests = [
            ("oneway64.per_write", SIZE, 1, counts.raw_per_write),
            ("oneway64.batched", SIZE, BATCH, counts.oneway),
            ("bulk1MiB", BULK_SIZE, 1, counts.bulk),
        ]
        for name, size, per_write, count in [] if rtt_only else tests:
            label = f"raw.{name}"
            with trio.fail_after(SETUP_TIMEOUT):
                stream = await host.new_stream(peer, [protocol])
            reader = FrameReader(stream, RAW_MAX_FRAME)
            await stream.write(frame_json({"mode": "send", "size": size, "per_write": per_write}))

            async def run(n: int, label: str, stream: Any = stream, reader: Any = reader) -> float:
                gc.collect()
                await stream.write(frame_json({"count": n}))
                with trio.fail_after(run_timeout(n, 500)):
                    arrivals = await raw_receive(reader, n, size, label)  # noqa: B023
                return arrivals.rate()

            await run(counts.warmup(count), f"{label} warm-up")
            rates = []
            for i in range(counts.repeats):
                rate = await run(count, label)
                if size == BULK_SIZE:
                    rate = rate * size / 1e6
                rates.append(rate)
                progress(label, i + 1, counts.repeats, rate, "MB/s" if size > SIZE else "msg/s")
            results.rates[name] = best_of(label, rates, count)
            await stream.close()

        with trio.fail_after(SETUP_TIMEOUT):
            stream = await host.new_stream(peer, [protocol])
        reader = FrameReader(stream, RAW_MAX_FRAME)
        await stream.write(frame_json({"mode": "echo"}))
        bodies = wire_pool(SIZE)
        frames = framed_pool(SIZE)
        write = stream.write
        read_frame = reader.read_frame
        samples: list[int] = []
        gc.collect()
        with trio.fail_after(run_timeout(counts.rtt, 200)):
            for i in range(counts.rtt_warmup + counts.rtt):
                start = time.perf_counter_ns()
                await write(frames[i % POOL])
                body = await read_frame()
                elapsed = time.perf_counter_ns() - start
                check(body == bodies[i % POOL], f"raw.rtt64: wrong reply to request {i}")
                if i >= counts.rtt_warmup:
                    samples.append(elapsed)
        await stream.close()
        results.latencies["rtt64"] = latency_from_ns(samples)
        summary(f"  raw.rtt64: {results.latencies['rtt64'].describe()}")
    return results


# -- zenoh ----------------------------------------------------------------------------------------


def zenoh_config(*, listen: str | None = None, connect: str | None = None) -> Any:
    """A zenoh peer config: TCP on 127.0.0.1 only, no multicast scouting, no shared memory."""
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("transport/shared_memory/enabled", "false")
    config.insert_json5("listen/endpoints", json.dumps([listen] if listen else []))
    config.insert_json5("connect/endpoints", json.dumps([connect] if connect else []))
    return config


def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = SETUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchmarkFailure(f"timed out waiting for {what}")
        time.sleep(0.005)


def _wait_matching(publisher: Any, what: str) -> None:
    """Wait until a zenoh publisher has a matching subscriber (else its puts go nowhere)."""
    _wait_until(lambda: bool(publisher.matching_status.matching), what)


def zenoh_server(port: int) -> None:
    """The child of the zenoh suite: publishes on command and echoes requests."""
    import zenoh

    block = zenoh.CongestionControl.BLOCK
    session: Any = zenoh.open(zenoh_config(listen=f"tcp/127.0.0.1:{port}"))
    try:
        oneway = session.declare_publisher(ZKEY_ONEWAY, congestion_control=block)
        bulk = session.declare_publisher(ZKEY_BULK, congestion_control=block)
        replies = session.declare_publisher(ZKEY_REP, congestion_control=block, express=True)
        echoed = [0]

        def on_request(sample: Any) -> None:
            echoed[0] += 1
            replies.put(sample.payload)

        requests = session.declare_subscriber(ZKEY_REQ, on_request)
        payloads = {size: [zenoh.ZBytes(body) for body in wire_pool(size)] for size in (SIZE,)}
        payloads[BULK_SIZE] = [zenoh.ZBytes(body) for body in wire_pool(BULK_SIZE)]
        announce({"ready": True})
        while (command := read_command()) is not None:
            try:
                kind = command["cmd"]
                if kind in ("oneway", "bulk"):
                    publisher: Any = oneway if kind == "oneway" else bulk
                    _wait_matching(publisher, "a zenoh subscriber")
                    items = payloads[SIZE if kind == "oneway" else BULK_SIZE]
                    n = len(items)
                    put = publisher.put
                    gc.collect()
                    for i in range(command["count"]):
                        put(items[i % n])
                    answer: dict[str, Any] = {"ok": True, "sent": command["count"]}
                elif kind == "rtt_ready":
                    _wait_matching(replies, "the reply subscriber")
                    answer = {"ok": True}
                elif kind == "stats":
                    answer = {"ok": True, "requests": echoed[0]}
                else:
                    answer = {"ok": False, "error": f"unknown command {kind!r}"}
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            announce(answer)
        requests.undeclare()
    finally:
        session.close()


class _Counter:
    """A callback subscriber's view of one run: counts, checks and times what arrives.

    Called on zenoh's (or any) receiving thread; ``done`` is set at the last expected message.
    Every message's length is checked, and the seq of every POOL-th message (the first of each
    cycle through the pool) and of every bulk message.
    """

    def __init__(self, label: str, count: int, size: int) -> None:
        self.arrivals = Arrivals(label)
        self.count = count
        self.size = size
        self.errors: list[str] = []
        self.done = threading.Event()
        self._every = size == BULK_SIZE

    def __call__(self, body: bytes | memoryview) -> None:
        arrivals = self.arrivals
        index = arrivals.count
        now = time.perf_counter()
        if len(body) != self.size:
            self.errors.append(f"message {index} is {len(body)} bytes")
        elif self._every or index % POOL == 0:
            seq = Tick.FromString(bytes(body)).seq
            if seq != expected_seq(index, self.size):
                self.errors.append(f"message {index} has seq {seq}")
        arrivals.arrived(1, now)
        if arrivals.count >= self.count:
            self.done.set()

    def finish(self, timeout: float) -> float:
        """Wait for the last message, check the run, and return the rate."""
        finished = self.done.wait(timeout)
        time.sleep(0.02)  # a message beyond the count would show up now
        label = self.arrivals.label
        check(finished, f"{label}: {self.arrivals.count} of {self.count} within {timeout:g} s")
        check(not self.errors, f"{label}: {self.errors[:5]}")
        check(
            self.arrivals.count == self.count,
            f"{label}: received {self.arrivals.count}, sent {self.count}",
        )
        return self.arrivals.rate()


def zenoh_client(child: Child, ready: dict[str, Any], counts: Counts, port: int) -> SuiteResults:
    """The parent's side of the zenoh suite."""
    import zenoh

    results = SuiteResults(info=f"eclipse-zenoh {_version('eclipse-zenoh')}")
    session: Any = zenoh.open(zenoh_config(connect=f"tcp/127.0.0.1:{port}"))
    try:
        current: list[_Counter | None] = [None]

        def on_sample(sample: Any) -> None:
            counter = current[0]
            if counter is not None:
                counter(sample.payload.to_bytes())

        subscribers = [session.declare_subscriber(k, on_sample) for k in (ZKEY_ONEWAY, ZKEY_BULK)]
        for name, size, count in (
            ("oneway64", SIZE, counts.oneway),
            ("bulk1MiB", BULK_SIZE, counts.bulk),
        ):
            label = f"zenoh.{name}"
            cmd = "oneway" if size == SIZE else "bulk"

            def run(n: int, label: str, cmd: str = cmd, size: int = size) -> float:
                counter = current[0] = _Counter(label, n, size)
                gc.collect()
                child.send({"cmd": cmd, "count": n})
                rate = counter.finish(run_timeout(n))
                answer = child.receive(SETUP_TIMEOUT)
                check(answer["sent"] == n, f"{label}: the publisher sent {answer['sent']} of {n}")
                current[0] = None
                return rate

            run(counts.warmup(count), f"{label} warm-up")
            rates = []
            for i in range(counts.repeats):
                rate = run(count, label)
                if size == BULK_SIZE:
                    rate = rate * size / 1e6
                rates.append(rate)
                progress(label, i + 1, counts.repeats, rate, "MB/s" if size > SIZE else "msg/s")
            results.rates[name] = best_of(label, rates, count)
        for subscriber in subscribers:
            subscriber.undeclare()

        replies: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        reply_sub = session.declare_subscriber(
            ZKEY_REP, lambda sample: replies.put(sample.payload.to_bytes())
        )
        requests = session.declare_publisher(
            ZKEY_REQ, congestion_control=zenoh.CongestionControl.BLOCK, express=True
        )
        _wait_matching(requests, "the zenoh echo subscriber")
        child.request({"cmd": "rtt_ready"}, SETUP_TIMEOUT)
        bodies = wire_pool(SIZE)
        payloads = [zenoh.ZBytes(body) for body in bodies]
        samples = _sync_rtt(
            "zenoh.rtt64", counts, lambda i: requests.put(payloads[i]), replies.get, bodies
        )
        stats = child.request({"cmd": "stats"}, SETUP_TIMEOUT)
        total = counts.rtt_warmup + counts.rtt
        check(stats["requests"] == total, f"zenoh.rtt64: echoed {stats['requests']} of {total}")
        results.latencies["rtt64"] = samples
        reply_sub.undeclare()
        requests.undeclare()
    finally:
        session.close()
    return results


def _sync_rtt(
    label: str,
    counts: Counts,
    send: Callable[[int], None],
    receive: Callable[..., bytes],
    bodies: list[bytes],
) -> Latency:
    """Sequential round trips: ``send(i)`` the i-th pool message, ``receive`` its echo."""
    samples: list[int] = []
    gc.collect()
    for i in range(counts.rtt_warmup + counts.rtt):
        k = i % POOL
        start = time.perf_counter_ns()
        send(k)
        body = receive(timeout=SETUP_TIMEOUT)
        elapsed = time.perf_counter_ns() - start
        check(body == bodies[k], f"{label}: wrong reply to request {i}")
        if i >= counts.rtt_warmup:
            samples.append(elapsed)
    latency = latency_from_ns(samples)
    summary(f"  {label}: {latency.describe()}")
    return latency


# -- zmq ------------------------------------------------------------------------------------------


def zmq_server() -> None:
    """The child of the zmq suite: PUSH sockets that send on command, a REP socket that echoes."""
    import zmq

    context = zmq.Context()
    oneway = context.socket(zmq.PUSH)
    bulk = context.socket(zmq.PUSH)
    for sock in (oneway, bulk):
        sock.setsockopt(zmq.LINGER, 0)
    ports = {
        "oneway": oneway.bind_to_random_port("tcp://127.0.0.1"),
        "bulk": bulk.bind_to_random_port("tcp://127.0.0.1"),
    }
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    ports["rep"] = rep.bind_to_random_port("tcp://127.0.0.1")
    echoed = [0]

    def echo() -> None:
        try:
            while True:
                rep.send(rep.recv(copy=True))
                echoed[0] += 1
        except zmq.ContextTerminated:
            rep.close()

    thread = threading.Thread(target=echo, name="zmq-echo", daemon=True)
    thread.start()
    payloads = {SIZE: wire_pool(SIZE), BULK_SIZE: wire_pool(BULK_SIZE)}
    announce({"ready": True, "ports": ports})
    try:
        while (command := read_command()) is not None:
            try:
                kind = command["cmd"]
                if kind in ("oneway", "bulk"):
                    small = kind == "oneway"
                    send = oneway.send if small else bulk.send
                    items = payloads[SIZE if small else BULK_SIZE]
                    n = len(items)
                    gc.collect()
                    for i in range(command["count"]):
                        send(items[i % n], copy=small)
                    answer: dict[str, Any] = {"ok": True, "sent": command["count"]}
                elif kind == "stats":
                    answer = {"ok": True, "requests": echoed[0]}
                else:
                    answer = {"ok": False, "error": f"unknown command {kind!r}"}
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            announce(answer)
    finally:
        oneway.close()
        bulk.close()
        context.term()
        thread.join(timeout=1.0)


def zmq_client(child: Child, ready: dict[str, Any], counts: Counts) -> SuiteResults:
    """The parent's side of the zmq suite."""
    import zmq

    results = SuiteResults(info=f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}")
    context = zmq.Context()
    ports = ready["ports"]
    sockets = []
    try:
        for name, size, count in (
            ("oneway64", SIZE, counts.oneway),
            ("bulk1MiB", BULK_SIZE, counts.bulk),
        ):
            label = f"zmq.{name}"
            small = size == SIZE
            pull = context.socket(zmq.PULL)
            pull.setsockopt(zmq.LINGER, 0)
            pull.setsockopt(zmq.RCVTIMEO, int(SETUP_TIMEOUT * 1000))
            pull.connect(f"tcp://127.0.0.1:{ports['oneway' if small else 'bulk']}")
            sockets.append(pull)

            def run(
                n: int, label: str, pull: Any = pull, size: int = size, small: bool = small
            ) -> float:
                counter = _Counter(label, n, size)
                gc.collect()
                child.send({"cmd": "oneway" if small else "bulk", "count": n})
                recv = pull.recv
                try:
                    if small:
                        for _ in range(n):
                            counter(recv())
                    else:
                        for _ in range(n):
                            counter(recv(copy=False).buffer)
                except zmq.Again:
                    raise BenchmarkFailure(
                        f"{label}: nothing for {SETUP_TIMEOUT:g} s after {counter.arrivals.count}"
                    ) from None
                rate = counter.finish(0.0)
                check(pull.poll(20) == 0, f"{label}: more messages than the {n} sent")
                answer = child.receive(SETUP_TIMEOUT)
                check(answer["sent"] == n, f"{label}: the pusher sent {answer['sent']} of {n}")
                return rate

            run(counts.warmup(count), f"{label} warm-up")
            rates = []
            for i in range(counts.repeats):
                rate = run(count, label)
                if not small:
                    rate = rate * size / 1e6
                rates.append(rate)
                progress(label, i + 1, counts.repeats, rate, "msg/s" if small else "MB/s")
            results.rates[name] = best_of(label, rates, count)

        req = context.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, int(SETUP_TIMEOUT * 1000))
        req.connect(f"tcp://127.0.0.1:{ports['rep']}")
        sockets.append(req)
        bodies = wire_pool(SIZE)

        def receive(timeout: float) -> bytes:
            data: bytes = req.recv()
            return data

        results.latencies["rtt64"] = _sync_rtt(
            "zmq.rtt64", counts, lambda i: req.send(bodies[i]), receive, bodies
        )
        stats = child.request({"cmd": "stats"}, SETUP_TIMEOUT)
        total = counts.rtt_warmup + counts.rtt
        check(stats["requests"] == total, f"zmq.rtt64: echoed {stats['requests']} of {total}")
    finally:
        for sock in sockets:
            sock.close()
        context.term()
    return results


# -- suites ---------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _server_args(suite: str, *extra: str) -> list[str]:
    return ["benchmarks.bench_network", "--role", "server", "--suite", suite, *extra]


def run_suite(
    suite: str, counts: Counts, *, pin: bool = True, rtt_only: bool = False
) -> SuiteResults:
    """Start the suite's child, run the parent's side against it, and end the child.

    With ``pin`` (and two CPUs or more) the parent runs on one CPU and the child on another.
    ``rtt_only`` (dndm and raw suites) measures the round trip (b) only.
    """
    summary(f"{suite}: starting the child process")
    with pinned(pin) as cpu:
        if suite == "dndm":
            with spawn(_server_args("dndm"), "dndm-server", cpu=cpu) as (child, ready):
                return trio.run(partial(dndm_client, rtt_only=rtt_only), child, ready, counts)
        if suite == "raw":
            with spawn(_server_args("raw"), "raw-server", cpu=cpu) as (child, ready):
                return trio.run(partial(raw_client, rtt_only=rtt_only), child, ready, counts)
        if suite == "zenoh":
            port = free_tcp_port()
            args = _server_args("zenoh", "--port", str(port))
            with spawn(args, "zenoh-server", cpu=cpu) as (child, ready):
                return zenoh_client(child, ready, counts, port)
        if suite == "zmq":
            with spawn(_server_args("zmq"), "zmq-server", cpu=cpu) as (child, ready):
                return zmq_client(child, ready, counts)
    raise ValueError(f"unknown suite {suite!r}")


def run_server(suite: str, port: int | None) -> None:
    """The child's entry point."""
    if suite == "dndm":
        trio.run(dndm_server)
    elif suite == "raw":
        trio.run(raw_server)
    elif suite == "zenoh":
        check(port is not None, "the zenoh server needs --port")
        assert port is not None
        zenoh_server(port)
    elif suite == "zmq":
        zmq_server()
    else:
        raise ValueError(f"unknown suite {suite!r}")


def _available(module: str) -> str | None:
    """``None`` if ``module`` can be imported, else why not."""
    try:
        __import__(module)
    except ImportError as exc:
        return f"{module} is not installed ({exc})"
    return None


# -- output ---------------------------------------------------------------------------------------


def emit_all(results: dict[str, SuiteResults | str], counts: Counts) -> dict[str, bool | None]:
    """Print every figure; return whether each target is met (None: not measured)."""
    raw = results["raw"]
    dndm = results["dndm"]
    assert isinstance(raw, SuiteResults)
    assert isinstance(dndm, SuiteResults)

    def note(m: Measurement, extra: str) -> str:
        spread = ", ".join(f"{r:,.0f}" for r in m.rates)
        return (
            f"{extra}; best of {len(m.rates)} runs of {m.count:,} after a warm-up run of "
            f"{counts.warmup(m.count):,} (runs: {spread})"
        )

    # Raw py-libp2p baselines.
    r = raw.rates
    emit(
        "network.raw.oneway64.per_write",
        r["oneway64.per_write"].value,
        note=note(r["oneway64.per_write"], "one stream.write per length-prefixed 64-byte message"),
    )
    emit(
        "network.raw.oneway64.batched",
        r["oneway64.batched"].value,
        note=note(r["oneway64.batched"], f"{BATCH} length-prefixed 64-byte messages per write"),
    )
    raw_rtt = raw.latencies["rtt64"]
    emit("network.raw.rtt64.median", raw_rtt.median, unit="us", note=raw_rtt.describe())
    emit("network.raw.rtt64.p99", raw_rtt.p99, unit="us", note=raw_rtt.describe())
    emit(
        "network.raw.bulk1MiB",
        r["bulk1MiB"].value,
        unit="MB/s",
        note=note(r["bulk1MiB"], "one stream.write per length-prefixed 1 MiB message"),
    )

    # dndm, against the raw baselines.
    d = dndm.rates
    met: dict[str, bool | None] = {}
    a = d["oneway64.send_many"].value
    met["a"] = a >= TARGET_ONEWAY
    emit(
        "network.dndm.oneway64.send_many",
        a,
        baseline="network.raw.oneway64.batched",
        baseline_value=r["oneway64.batched"].value,
        note=note(
            d["oneway64.send_many"],
            f"send_many of {BATCH}; subscriber depth {DEPTH}, overflow=block; "
            f"target >= {TARGET_ONEWAY:,.0f} msg/s",
        ),
        target=TARGET_ONEWAY,
        met=met["a"],
    )
    vs_batched = d["oneway64.send"].value / r["oneway64.batched"].value
    emit(
        "network.dndm.oneway64.send",
        d["oneway64.send"].value,
        baseline="network.raw.oneway64.per_write",
        baseline_value=r["oneway64.per_write"].value,
        note=note(
            d["oneway64.send"],
            "await send() per message (dndm batches on the wire); baseline: one write per "
            f"message; vs raw batched x{vs_batched:.2f}",
        ),
    )
    dndm_rtt = dndm.latencies["rtt64"]
    limit = raw_rtt.median + TARGET_RTT_EXTRA_US
    met["b"] = dndm_rtt.median <= limit
    emit(
        "network.dndm.rtt64.median",
        dndm_rtt.median,
        unit="us",
        baseline="network.raw.rtt64.median",
        baseline_value=raw_rtt.median,
        note=f"{dndm_rtt.describe()}; target <= raw median + {TARGET_RTT_EXTRA_US:.0f} us "
        f"= {limit:.0f} us (dndm - raw = {dndm_rtt.median - raw_rtt.median:+.0f} us)",
        target=limit,
        met=met["b"],
    )
    emit(
        "network.dndm.rtt64.p99",
        dndm_rtt.p99,
        unit="us",
        baseline="network.raw.rtt64.p99",
        baseline_value=raw_rtt.p99,
        note=dndm_rtt.describe(),
    )
    bulk = d["bulk1MiB"].value
    met["c"] = bulk >= TARGET_BULK_RATIO * r["bulk1MiB"].value
    emit(
        "network.dndm.bulk1MiB",
        bulk,
        unit="MB/s",
        baseline="network.raw.bulk1MiB",
        baseline_value=r["bulk1MiB"].value,
        note=note(
            d["bulk1MiB"],
            f"await send() per 1 MiB message; subscriber depth {BULK_DEPTH}, overflow=block; "
            f"target >= {TARGET_BULK_RATIO:g} x raw",
        ),
        target=TARGET_BULK_RATIO * r["bulk1MiB"].value,
        met=met["c"],
    )

    # zenoh and zmq, against dndm.
    for system in ("zenoh", "zmq"):
        res = results[system]
        if isinstance(res, str):
            for name, unit in (
                ("oneway64", "msg/s"),
                ("rtt64.median", "us"),
                ("rtt64.p99", "us"),
                ("bulk1MiB", "MB/s"),
            ):
                emit_skipped(f"network.{system}.{name}", res, unit=unit)
            continue
        emit(
            f"network.{system}.oneway64",
            res.rates["oneway64"].value,
            baseline="network.dndm.oneway64.send_many",
            baseline_value=a,
            note=note(res.rates["oneway64"], f"{res.info}; one put/send per message"),
        )
        lat = res.latencies["rtt64"]
        emit(
            f"network.{system}.rtt64.median",
            lat.median,
            unit="us",
            baseline="network.dndm.rtt64.median",
            baseline_value=dndm_rtt.median,
            note=f"{res.info}; {lat.describe()}",
        )
        emit(
            f"network.{system}.rtt64.p99",
            lat.p99,
            unit="us",
            baseline="network.dndm.rtt64.p99",
            baseline_value=dndm_rtt.p99,
            note=f"{res.info}; {lat.describe()}",
        )
        emit(
            f"network.{system}.bulk1MiB",
            res.rates["bulk1MiB"].value,
            unit="MB/s",
            baseline="network.dndm.bulk1MiB",
            baseline_value=bulk,
            note=note(res.rates["bulk1MiB"], f"{res.info}; one put/send per 1 MiB message"),
        )
    return met


def run_rtt_rounds(counts: Counts, rounds: int, *, pin: bool = True) -> bool:
    """Measure (b) only, in ``rounds`` alternating raw and dndm runs; print the figures.

    Each round starts fresh processes for both suites, in alternating order (raw first in odd
    rounds, dndm first in even ones), so slow spells of a shared machine hit both alike.  The
    figures are the medians over the rounds of each round's median and p99.  Returns whether
    target (b) is met by those medians.
    """
    per_round: dict[str, list[Latency]] = {"raw": [], "dndm": []}
    for n in range(rounds):
        order = ("raw", "dndm") if n % 2 == 0 else ("dndm", "raw")
        for suite in order:
            per_round[suite].append(
                run_suite(suite, counts, pin=pin, rtt_only=True).latencies["rtt64"]
            )
        raw, dndm = per_round["raw"][-1], per_round["dndm"][-1]
        summary(
            f"round {n + 1}/{rounds}: dndm {dndm.median:.0f} us (p10 {dndm.percentile(0.1):.0f}, "
            f"p99 {dndm.p99:.0f}), raw {raw.median:.0f} us (p10 {raw.percentile(0.1):.0f}, "
            f"p99 {raw.p99:.0f}): {dndm.median - raw.median:+.0f} us"
        )
    stats = {
        suite: (
            statistics.median(lat.median for lat in runs),
            statistics.median(lat.p99 for lat in runs),
            ", ".join(f"{lat.median:.0f}/{lat.p99:.0f}" for lat in runs),
        )
        for suite, runs in per_round.items()
    }
    how = f"median over {rounds} alternating rounds of {counts.rtt} round trips (median/p99 "
    raw_median, raw_p99, raw_runs = stats["raw"]
    median, p99, runs = stats["dndm"]
    emit("network.raw.rtt64.median", raw_median, unit="us", note=f"{how}per round: {raw_runs})")
    emit("network.raw.rtt64.p99", raw_p99, unit="us", note=f"{how}per round: {raw_runs})")
    limit = raw_median + TARGET_RTT_EXTRA_US
    met = median <= limit
    emit(
        "network.dndm.rtt64.median",
        median,
        unit="us",
        baseline="network.raw.rtt64.median",
        baseline_value=raw_median,
        note=f"{how}per round: {runs}); target <= raw median + {TARGET_RTT_EXTRA_US:.0f} us",
        target=limit,
        met=met,
    )
    emit(
        "network.dndm.rtt64.p99",
        p99,
        unit="us",
        baseline="network.raw.rtt64.p99",
        baseline_value=raw_p99,
        note=f"{how}per round: {runs})",
    )
    word = "MET " if met else "MISS"
    summary(
        f"[{word}] (b) dndm RTT median <= raw median + {TARGET_RTT_EXTRA_US:.0f} us: "
        f"{median:.0f} us vs raw {raw_median:.0f} us ({median - raw_median:+.0f} us); "
        f"p99 {p99:.0f} vs {raw_p99:.0f} us (medians of {rounds} rounds)"
    )
    return met


def report_targets(results: dict[str, SuiteResults | str], met: dict[str, bool | None]) -> bool:
    """Print the targets and whether each is met on stderr; True when all are met."""
    raw = results["raw"]
    dndm = results["dndm"]
    assert isinstance(raw, SuiteResults)
    assert isinstance(dndm, SuiteResults)

    def verdict(label: str, ok: bool | None, detail: str) -> None:
        word = "n/a " if ok is None else ("MET " if ok else "MISS")
        summary(f"[{word}] {label}: {detail}")

    verdict(
        f"(a) dndm 64-byte one way >= {TARGET_ONEWAY:,.0f} msg/s",
        met["a"],
        f"{dndm.rates['oneway64.send_many'].value:,.0f} msg/s (send_many); raw batched "
        f"{raw.rates['oneway64.batched'].value:,.0f}, raw per write "
        f"{raw.rates['oneway64.per_write'].value:,.0f}",
    )
    d, b = dndm.latencies["rtt64"], raw.latencies["rtt64"]
    verdict(
        f"(b) dndm RTT median <= raw median + {TARGET_RTT_EXTRA_US:.0f} us",
        met["b"],
        f"{d.median:.0f} us vs raw {b.median:.0f} us ({d.median - b.median:+.0f} us); "
        f"p99 {d.p99:.0f} vs {b.p99:.0f} us",
    )
    dv, rv = dndm.rates["bulk1MiB"].value, raw.rates["bulk1MiB"].value
    verdict(
        f"(c) dndm 1 MiB one way >= {TARGET_BULK_RATIO:g} x raw",
        met["c"],
        f"{dv:,.1f} MB/s vs raw {rv:,.1f} MB/s (x{dv / rv:.2f})",
    )
    return all(v is not False for v in met.values())


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--role server`` is how the benchmark starts its children)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_network",
        description="dndm across two processes on 127.0.0.1, with raw libp2p, zenoh and zmq.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 10x)")
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="timed runs per throughput figure"
    )
    parser.add_argument("--no-zenoh", action="store_true", help="skip the zenoh baseline")
    parser.add_argument("--no-zmq", action="store_true", help="skip the zmq baseline")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the two processes to two different CPUs",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--rtt-rounds",
        type=int,
        default=0,
        metavar="N",
        help="measure only the round trip (b), in N alternating raw/dndm rounds",
    )
    parser.add_argument(
        "--role", choices=("main", "server"), default="main", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--suite", choices=("dndm", "raw", "zenoh", "zmq"), default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.rtt_rounds < 0:
        parser.error("--rtt-rounds must not be negative")
    if args.role == "server" and args.suite is None:
        parser.error("--role server needs --suite")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every suite, print the JSON lines and the targets; return the exit status.

    Wrong results raise :class:`~benchmarks.common.BenchmarkFailure`.  A missed target only
    shows in the summary (and the figures' ``met``), unless ``--strict`` makes it exit with 1.
    """
    args = parse_args(argv)
    if args.role == "server":
        run_server(args.suite, args.port)
        return 0
    counts = Counts(repeats=args.repeats)
    if args.quick:
        counts = counts.quick()
    started = time.monotonic()
    if args.rtt_rounds:
        met_b = run_rtt_rounds(counts, args.rtt_rounds, pin=not args.no_pin)
        summary(f"total {time.monotonic() - started:.1f} s")
        return 1 if args.strict and not met_b else 0
    for size in (SIZE, BULK_SIZE):
        pool(size)
    results: dict[str, SuiteResults | str] = {}
    for suite in ("raw", "dndm"):
        results[suite] = run_suite(suite, counts, pin=not args.no_pin)
    for suite, disabled, module in (
        ("zenoh", args.no_zenoh, "zenoh"),
        ("zmq", args.no_zmq, "zmq"),
    ):
        reason = f"disabled by --no-{suite}" if disabled else _available(module)
        results[suite] = (
            reason if reason is not None else run_suite(suite, counts, pin=not args.no_pin)
        )
    met = emit_all(results, counts)
    ok = report_targets(results, met)
    summary(f"total {time.monotonic() - started:.1f} s")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
