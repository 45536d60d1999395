"""In-process delivery of 64-byte protobuf messages: dndm router vs trio channels vs zenoh.

Run it as ``python -m benchmarks.bench_inprocess [--messages N] [--quick]``.  It prints one JSON
object per line on stdout (see :mod:`benchmarks.common`) and a summary with the targets on stderr.

Topologies: ``1to1``; ``1to4`` (one publisher, four subscribers; every subscriber gets every
message, so deliveries = messages x 4: both rates are printed); ``4to1`` (four publishers in four
tasks, one subscriber).  Paths:

* ``awaited``: ``await intent.send(msg)`` per message; consumers ``async for`` per message.
* ``batched``: ``await intent.send_many(batch)`` with batches of 1024 pre-built messages;
  consumers ``receive_batch(4096)`` and count every message of the batch.
* ``nowait`` (extra): ``intent.send_nowait(msg)`` per message and ``receive_nowait()`` loops that
  yield only on ``WouldBlock``, exactly like the trio nowait baseline below.  It separates the
  per-message Python cost from the cost of a trio schedule point per message.

Subscribers use ``overflow="block"`` with depth 4096, so nothing is dropped; every run checks that
every subscriber got every message (the benchmark raises otherwise).  Messages come from a pool of
1024 distinct 64-byte ``Tick`` objects built outside the timed region (in-process delivery is
zero-copy, so reusing them is fine).

Baselines doing the same work:

* ``trio_channel.*.awaited``: ``trio.open_memory_channel(4096)``, ``await send`` per message and
  ``async for`` in the consumer; one channel per subscriber for 1to4 (the producer sends to each),
  four producers on clones of one send channel for 4to1.
* ``trio_channel.*.nowait``: the same channels driven by ``send_nowait``/``receive_nowait`` loops
  that yield (``trio.lowlevel.checkpoint``) only on ``WouldBlock``.
* ``zenoh.1to1.same_session``: one strictly local zenoh peer session (no scouting, no listen or
  connect endpoints), a publisher and a callback subscriber on the same key expression.

Each dndm figure is compared to its fair baseline: awaited to the awaited channel, batched and
nowait to the nowait channel; the 1to1 dndm figures are also compared to zenoh.

Counts: 200,000 messages per run for the per-message awaited paths and zenoh, 2,000,000 for the
batched and nowait paths (``--messages N`` sets both, ``--quick`` divides by 10).  Each figure is
the best of ``--repeats`` (3) runs; the trio runs are interleaved in rounds (every case once per
round), each run in a fresh ``trio.run`` and a fresh router.  ``--strict`` exits with status 1
when a target is missed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from benchmarks.common import (
    DEFAULT_REPEATS,
    Measurement,
    Stopwatch,
    check,
    emit,
    emit_skipped,
    interleaved,
    make_tick,
    make_ticks,
    measure,
    scaled,
    summary,
)
from benchmarks.proto.bench_pb2 import Tick
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.router import Router
from dndm_p2p.errors import WouldBlock

#: Message size under test, in serialized bytes.
SIZE = 64
#: Distinct pre-built messages; also the batch size of the batched path.
BATCH = 1024
#: Queue depth of every subscriber and every trio channel.
DEPTH = 4096
#: ``max_n`` of the batched consumers.
RECEIVE_BATCH = 4096
#: Default message counts (per figure, over all producers), for roughly 0.3-1 s per run.
AWAITED_MESSAGES = 200_000
BATCHED_MESSAGES = 2_000_000
ROUTE = "bench.inprocess"
TOPOLOGIES: dict[str, tuple[int, int]] = {"1to1": (1, 1), "1to4": (1, 4), "4to1": (4, 1)}
#: Each dndm path and the trio-channel path it is compared to.
FAIR_BASELINE = {"awaited": "awaited", "batched": "nowait", "nowait": "nowait"}

#: Targets checked in the summary.
TARGET_BATCHED_1TO1 = 2_000_000.0
TARGET_VS_ZENOH = 3.0

_POOL: list[Tick] = []


def pool() -> list[Tick]:
    """The shared pool of ``BATCH`` distinct 64-byte ``Tick`` messages (built once)."""
    if not _POOL:
        _POOL.extend(make_ticks(BATCH, SIZE))
        for msg in _POOL:
            check(msg.ByteSize() == SIZE, f"pool message is {msg.ByteSize()} bytes, not {SIZE}")
    return _POOL


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative counts that add up to it."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def message_list(count: int) -> list[Tick]:
    """``count`` references into the pool, in pool order, for the per-message paths."""
    msgs = pool()
    full, rest = divmod(count, BATCH)
    return msgs * full + msgs[:rest]


def batch_list(count: int) -> list[list[Tick]]:
    """``count`` messages as batches of ``BATCH`` (the last one may be shorter)."""
    msgs = pool()
    full, rest = divmod(count, BATCH)
    batches = [msgs] * full
    if rest:
        batches.append(msgs[:rest])
    return batches


def expected_last(count: int) -> Tick:
    """The last message a single producer of ``count`` messages sends."""
    return pool()[(count - 1) % BATCH]


@dataclass(slots=True)
class Received:
    """What one consumer saw: how many messages, and the last one."""

    count: int = 0
    last: Tick | None = None


async def _send_after_yield(
    send_nowait: Callable[[Tick], None],
    msg: Tick,
    would_block: type[Exception] = trio.WouldBlock,
) -> None:
    """The slow path of a nowait producer: yield until ``send_nowait`` stops raising."""
    while True:
        await trio.lowlevel.checkpoint()
        try:
            send_nowait(msg)
        except would_block:
            continue
        return


# -- dndm -------------------------------------------------------------------------------------


async def _dndm_produce_awaited(intent: Intent[Tick], msgs: Sequence[Tick]) -> None:
    send = intent.send
    for msg in msgs:
        await send(msg)


async def _dndm_produce_batched(intent: Intent[Tick], batches: Sequence[list[Tick]]) -> None:
    send_many = intent.send_many
    for batch in batches:
        await send_many(batch)


async def _dndm_consume_awaited(interest: Interest[Tick], expected: int, out: Received) -> None:
    count = 0
    msg = None
    async for msg in interest:  # noqa: B007 - the last message is checked after the loop
        count += 1
        if count >= expected:
            break
    out.count, out.last = count, msg


async def _dndm_consume_batched(interest: Interest[Tick], expected: int, out: Received) -> None:
    receive_batch = interest.receive_batch
    count = 0
    msg = None
    while count < expected:
        for msg in await receive_batch(RECEIVE_BATCH):  # noqa: B007
            count += 1
    out.count, out.last = count, msg


async def _dndm_produce_nowait(intent: Intent[Tick], batches: Sequence[list[Tick]]) -> None:
    send_nowait = intent.send_nowait
    for batch in batches:
        for msg in batch:
            try:
                send_nowait(msg)
            except WouldBlock:
                await _send_after_yield(send_nowait, msg, WouldBlock)
    await trio.lowlevel.checkpoint()


async def _dndm_consume_nowait(interest: Interest[Tick], expected: int, out: Received) -> None:
    receive_nowait = interest.receive_nowait
    count = 0
    msg = None
    while count < expected:
        try:
            while True:
                msg = receive_nowait()
                count += 1
        except WouldBlock:
            await trio.lowlevel.checkpoint()
    out.count, out.last = count, msg


def dndm_run(topology: str, path: str, total: int) -> Callable[[], Awaitable[float]]:
    """An async body for one dndm run of ``total`` messages (over all producers)."""
    producers, consumers = TOPOLOGIES[topology]
    shares = split(total, producers)
    if path == "awaited":
        work: list[Any] = [message_list(n) for n in shares]
        produce: Callable[..., Awaitable[None]] = _dndm_produce_awaited
        consume: Callable[..., Awaitable[None]] = _dndm_consume_awaited
    elif path == "nowait":
        work = [batch_list(n) for n in shares]
        produce, consume = _dndm_produce_nowait, _dndm_consume_nowait
    else:
        work = [batch_list(n) for n in shares]
        produce, consume = _dndm_produce_batched, _dndm_consume_batched

    async def run() -> float:
        async with Router(name="bench") as router:
            intents = [router.publish(ROUTE, Tick) for _ in range(producers)]
            interests = [
                router.subscribe(ROUTE, Tick, depth=DEPTH, overflow="block")
                for _ in range(consumers)
            ]
            received = [Received() for _ in interests]
            watch = Stopwatch()
            with watch.timing():
                async with trio.open_nursery() as nursery:
                    for interest, out in zip(interests, received, strict=True):
                        nursery.start_soon(consume, interest, total, out)
                    for intent, share in zip(intents, work, strict=True):
                        nursery.start_soon(produce, intent, share)
            name = f"inprocess.{topology}.{path}"
            for intent, n in zip(intents, shares, strict=True):
                sent = intent.stats
                check(sent.sent == n and sent.unrouted == 0, f"{name}: intent {sent}, sent {n}")
                intent.close()
            for interest, out in zip(interests, received, strict=True):
                stats = interest.stats
                check(
                    out.count == total and stats.received == total,
                    f"{name}: a subscriber got {out.count} (stats {stats}) of {total}",
                )
                check(stats.dropped == 0 and stats.queued == 0, f"{name}: {stats}")
                if producers == 1:
                    check(out.last is expected_last(total), f"{name}: wrong last message")
                interest.close()
        return watch.elapsed

    return run


# -- trio memory channels -----------------------------------------------------------------------


async def _trio_produce_awaited(
    sends: Sequence[Callable[[Tick], Awaitable[None]]], msgs: Sequence[Tick]
) -> None:
    if len(sends) == 1:
        send = sends[0]
        for msg in msgs:
            await send(msg)
        return
    for msg in msgs:
        for send in sends:
            await send(msg)


async def _trio_produce_nowait(
    sends: Sequence[Callable[[Tick], None]], batches: Sequence[list[Tick]]
) -> None:
    for batch in batches:
        for send_nowait in sends:
            for msg in batch:
                try:
                    send_nowait(msg)
                except trio.WouldBlock:
                    await _send_after_yield(send_nowait, msg)
    await trio.lowlevel.checkpoint()


async def _trio_consume_awaited(
    channel: trio.MemoryReceiveChannel[Tick], expected: int, out: Received
) -> None:
    count = 0
    msg = None
    async for msg in channel:  # noqa: B007
        count += 1
        if count >= expected:
            break
    out.count, out.last = count, msg


async def _trio_consume_nowait(
    channel: trio.MemoryReceiveChannel[Tick], expected: int, out: Received
) -> None:
    receive_nowait = channel.receive_nowait
    count = 0
    msg = None
    while count < expected:
        try:
            while True:
                msg = receive_nowait()
                count += 1
        except trio.WouldBlock:
            await trio.lowlevel.checkpoint()
    out.count, out.last = count, msg


def trio_run(topology: str, path: str, total: int) -> Callable[[], Awaitable[float]]:
    """An async body for one trio-channel run of ``total`` messages (over all producers)."""
    producers, consumers = TOPOLOGIES[topology]
    shares = split(total, producers)
    awaited = path == "awaited"
    work: list[Any] = [message_list(n) if awaited else batch_list(n) for n in shares]

    async def run() -> float:
        channels = [trio.open_memory_channel[Tick](DEPTH) for _ in range(consumers)]
        if producers == 1:
            senders = [[send for send, _ in channels]]
        else:  # fan-in: one channel, a clone of its send side per producer
            senders = [[channels[0][0].clone()] for _ in range(producers)]
        received = [Received() for _ in channels]
        watch = Stopwatch()
        with watch.timing():
            async with trio.open_nursery() as nursery:
                for (_, receive), out in zip(channels, received, strict=True):
                    consume = _trio_consume_awaited if awaited else _trio_consume_nowait
                    nursery.start_soon(consume, receive, total, out)
                for sends, share in zip(senders, work, strict=True):
                    if awaited:
                        fns: list[Any] = [s.send for s in sends]
                        nursery.start_soon(_trio_produce_awaited, fns, share)
                    else:
                        fns = [s.send_nowait for s in sends]
                        nursery.start_soon(_trio_produce_nowait, fns, share)
        name = f"trio_channel.{topology}.{path}"
        for out in received:
            check(out.count == total, f"{name}: a consumer got {out.count} of {total}")
            if producers == 1:
                check(out.last is expected_last(total), f"{name}: wrong last message")
        for send, receive in channels:
            check(receive.statistics().current_buffer_used == 0, f"{name}: messages left")
            send.close()
            receive.close()
        for sends in senders:
            for s in sends:
                s.close()
        return watch.elapsed

    return run


# -- zenoh --------------------------------------------------------------------------------------


def zenoh_config() -> Any:
    """A zenoh peer config that touches no network: no scouting, listening or connecting."""
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"peer"')
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("scouting/gossip/enabled", "false")
    config.insert_json5("listen/endpoints", "[]")
    config.insert_json5("connect/endpoints", "[]")
    return config


class ZenohSameSession:
    """zenoh 1-to-1 pub/sub in one local session; ``run(n)`` times n puts until all counted.

    The subscriber's Python callback counts samples (zenoh calls it from its own thread) and
    sets an event at the last one; the timed region runs from the first ``put`` until that
    event.  The payload is one pre-built ``zenoh.ZBytes`` of a serialized 64-byte ``Tick`` (the
    fastest way to put in zenoh-python; a ``bytes`` payload is converted on every put).
    """

    def __init__(self) -> None:
        import zenoh

        self._session: Any = zenoh.open(zenoh_config())
        wire = make_tick(1, SIZE).SerializeToString()
        check(len(wire) == SIZE, f"zenoh payload is {len(wire)} bytes")
        self._payload = zenoh.ZBytes(wire)
        self._runs = 0

    def close(self) -> None:
        """Close the session."""
        self._session.close()

    def run(self, total: int) -> float:
        """Put ``total`` samples and wait until the subscriber counted them; return seconds."""
        self._runs += 1
        key = f"bench/inprocess/1to1/{self._runs}"
        done = threading.Event()
        state = [0]

        def on_sample(_sample: object) -> None:
            state[0] += 1
            if state[0] == total:
                done.set()

        subscriber = self._session.declare_subscriber(key, on_sample)
        publisher = self._session.declare_publisher(key)
        put = publisher.put
        payload = self._payload
        try:
            watch = Stopwatch()
            watch.start()
            for _ in range(total):
                put(payload)
            finished = done.wait(timeout=60.0)
            watch.stop()
            check(finished, f"zenoh: subscriber counted {state[0]} of {total} within 60 s")
            time.sleep(0.01)  # any sample beyond total would show up now
            check(state[0] == total, f"zenoh: subscriber counted {state[0]}, sent {total}")
        finally:
            publisher.undeclare()
            subscriber.undeclare()
        return watch.elapsed


def measure_zenoh(total: int, repeats: int) -> tuple[Measurement | None, str | None]:
    """The zenoh same-session rate, or ``(None, reason)`` when zenoh cannot be used."""
    try:
        import zenoh
    except ImportError as exc:
        return None, f"zenoh is not installed ({exc})"
    try:
        version = importlib.metadata.version("eclipse-zenoh")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(zenoh, "__version__", "?")
    summary(f"zenoh {version}: same-session pub/sub")
    bench = ZenohSameSession()
    try:
        bench.run(min(total, 10_000))  # warm-up: first declarations, thread start-up
        return measure(lambda: bench.run(total), total, repeats=repeats), None
    finally:
        bench.close()


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_inprocess",
        description="In-process delivery of 64-byte protobuf messages, with baselines.",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=None,
        help=f"messages per run for every path (default {AWAITED_MESSAGES:,} for per-message "
        f"paths and zenoh, {BATCHED_MESSAGES:,} for batched/nowait paths)",
    )
    parser.add_argument("--quick", action="store_true", help="divide message counts by 10")
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="runs per figure; the best is kept"
    )
    parser.add_argument("--no-zenoh", action="store_true", help="skip the zenoh baseline")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every figure, print the JSON lines and the targets; return the exit status.

    A lost or extra message raises :class:`~benchmarks.common.BenchmarkFailure`.  A missed
    target only shows in the summary, unless ``--strict`` makes it exit with status 1.
    """
    args = parse_args(argv)
    divisor = 10 if args.quick else 1
    awaited_n = max((args.messages or AWAITED_MESSAGES) // divisor, 1)
    batched_n = max((args.messages or BATCHED_MESSAGES) // divisor, 1)
    counts = {"awaited": awaited_n, "batched": batched_n, "nowait": batched_n}
    pool()

    zenoh_m: Measurement | None = None
    zenoh_skip: str | None = "disabled by --no-zenoh"
    if not args.no_zenoh:
        zenoh_m, zenoh_skip = measure_zenoh(awaited_n, args.repeats)

    cases: dict[str, tuple[Callable[[], float], int]] = {}
    for topology in TOPOLOGIES:
        for path in ("awaited", "nowait"):
            body = trio_run(topology, path, counts[path])
            cases[f"trio_channel.{topology}.{path}"] = (_trio_runner(body), counts[path])
        for path in ("awaited", "batched", "nowait"):
            body = dndm_run(topology, path, counts[path])
            cases[f"inprocess.{topology}.{path}"] = (_trio_runner(body), counts[path])
    results = interleaved(cases, repeats=args.repeats)

    pick_note = "runs interleaved in rounds with the other cases"
    for topology, (_, consumers) in TOPOLOGIES.items():
        for path in ("awaited", "nowait"):
            name = f"trio_channel.{topology}.{path}"
            _emit_pair(name, results[name], consumers, None, None, pick_note)
        for path, base_path in FAIR_BASELINE.items():
            name = f"inprocess.{topology}.{path}"
            base = f"trio_channel.{topology}.{base_path}"
            _emit_pair(name, results[name], consumers, base, results[base], pick_note)

    zenoh_name = "zenoh.1to1.same_session"
    if zenoh_m is not None:
        emit(
            zenoh_name,
            zenoh_m.value,
            note=f"callback subscriber, pre-built 64-byte ZBytes payload; {zenoh_m.describe()}",
        )
    else:
        emit_skipped(zenoh_name, zenoh_skip or "unavailable")
    for path in FAIR_BASELINE:
        m = results[f"inprocess.1to1.{path}"]
        emit(
            f"inprocess.1to1.{path}_vs_zenoh",
            m.value,
            baseline=zenoh_name,
            baseline_value=None if zenoh_m is None else zenoh_m.value,
            note=None if zenoh_m is not None else f"zenoh skipped: {zenoh_skip}",
        )

    met = _report_targets(results, zenoh_m)
    return 1 if args.strict and not met else 0


def _trio_runner(body: Callable[[], Awaitable[float]]) -> Callable[[], float]:
    return lambda: trio.run(body)


def _emit_pair(
    name: str,
    m: Measurement,
    consumers: int,
    base_name: str | None,
    base: Measurement | None,
    pick_note: str,
) -> None:
    """Print a figure (messages sent per second) and, for fan-out, its deliveries per second."""
    emit(
        name,
        m.value,
        baseline=base_name,
        baseline_value=None if base is None else base.value,
        note=f"{pick_note}; {m.describe()}",
    )
    if consumers > 1:
        deliveries = scaled(m, consumers)
        emit(
            f"{name}.deliveries",
            deliveries.value,
            baseline=None if base_name is None else f"{base_name}.deliveries",
            baseline_value=None if base is None else base.value * consumers,
            note=f"deliveries (messages x {consumers} subscribers) per second; {pick_note}",
        )


def _report_targets(results: dict[str, Measurement], zenoh_m: Measurement | None) -> bool:
    """Print the targets and whether each is met on stderr; True when all are met."""
    ok = True

    def verdict(label: str, met: bool | None, detail: str) -> None:
        nonlocal ok
        word = "n/a " if met is None else ("MET " if met else "MISS")
        if met is False:
            ok = False
        summary(f"[{word}] {label}: {detail}")

    batched = results["inprocess.1to1.batched"].value
    verdict(
        f"batched 1to1 >= {TARGET_BATCHED_1TO1:,.0f} msg/s",
        batched >= TARGET_BATCHED_1TO1,
        f"{batched:,.0f} msg/s",
    )
    for topology in TOPOLOGIES:
        ours = results[f"inprocess.{topology}.awaited"].value
        theirs = results[f"trio_channel.{topology}.awaited"].value
        verdict(
            f"awaited {topology} >= trio channel awaited",
            ours >= theirs,
            f"{ours:,.0f} vs {theirs:,.0f} msg/s (x{ours / theirs:.2f})",
        )
    for path in FAIR_BASELINE:
        ours = results[f"inprocess.1to1.{path}"].value
        if zenoh_m is None:
            verdict(f"{path} 1to1 >= {TARGET_VS_ZENOH:g}x zenoh", None, "zenoh skipped")
            continue
        factor = ours / zenoh_m.value
        verdict(
            f"{path} 1to1 >= {TARGET_VS_ZENOH:g}x zenoh same-session",
            factor >= TARGET_VS_ZENOH,
            f"{ours:,.0f} vs {zenoh_m.value:,.0f} msg/s (x{factor:.2f})",
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
