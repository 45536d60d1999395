"""64-byte messages through the asyncio (``dndm_p2p.aio``) and blocking (``dndm_p2p.sync``)
facades, against the trio API and zenoh-python, in one run.

Run it as ``python -m benchmarks.bench_facades [--quick]``; one JSON object per figure on
stdout (see :mod:`benchmarks.common`), a summary with the targets on stderr.

In process (one router, a subscriber with ``overflow="block"``, depth 8192):

* ``*.inprocess.batched``: ``send_many`` of 1024 pre-built ``Tick`` messages, the consumer takes
  whole batches (``receive_batch``); the aio and sync figures are compared to trio's;
* ``*.inprocess.per_message``: one ``send`` per message, the consumer awaits each ``receive``
  in another task (thread for sync); compared to trio's and, for aio, to zenoh-python's
  same-session pub/sub (``benchmarks.bench_inprocess.ZenohSameSession``);
* ``*.rpc.round_trip``: one ``Caller.call`` after the other to a ``Service`` on the same router
  (today's :mod:`dndm_p2p.core.rpc`, through the facades' thin layers), µs per call, median of
  the runs; compared to trio's as a difference (target: aio within 50 µs of trio).

Between two processes: a child process runs a trio node that subscribes and reports, for each
round, the time from the first to the last of N arrivals; the parent publishes the N messages
(``send_many``, batches of 1024) from a trio, an aio and a sync node in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trio

from benchmarks.bench_inprocess import measure_zenoh
from benchmarks.common import emit, emit_skipped, make_ticks, measure, summary
from benchmarks.proto.bench_pb2 import Tick
from dndm_p2p import NodeConfig, Router, aio, sync
from dndm_p2p.core.rpc import Caller, Service
from tests.proto.messages_pb2 import Reply, Request

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1024
DEPTH = 8192
CONFIG = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0",))

# -- in process: trio ---------------------------------------------------------------------------


def trio_batched(total: int) -> float:
    async def main() -> float:
        ticks = make_ticks(BATCH)
        async with (
            Router() as router,
            router.subscribe("b", Tick, depth=DEPTH, overflow="block") as sub,
            router.publish("b", Tick) as pub,
            trio.open_nursery() as nursery,
        ):

            async def produce() -> None:
                for _ in range(total // BATCH):
                    await pub.send_many(ticks)

            begin = time.perf_counter()
            nursery.start_soon(produce)
            got = 0
            while got < total:
                got += len(await sub.receive_batch(DEPTH))
            return time.perf_counter() - begin

    return trio.run(main)


def trio_per_message(total: int) -> float:
    async def main() -> float:
        ticks = make_ticks(BATCH)
        async with (
            Router() as router,
            router.subscribe("p", Tick, depth=DEPTH, overflow="block") as sub,
            router.publish("p", Tick) as pub,
            trio.open_nursery() as nursery,
        ):

            async def produce() -> None:
                for i in range(total):
                    await pub.send(ticks[i % BATCH])

            begin = time.perf_counter()
            nursery.start_soon(produce)
            for _ in range(total):
                await sub.receive()
            return time.perf_counter() - begin

    return trio.run(main)


def trio_round_trip(calls: int) -> float:
    async def main() -> float:
        async with Router() as router, trio.open_nursery() as nursery:
            service = Service(router, "rpc", Request, Reply, lambda r: Reply(text=r.text))
            await nursery.start(service.serve)
            async with Caller(router, "rpc", Request, Reply) as caller:
                await caller.call(Request(text="warm"))
                begin = time.perf_counter()
                for _ in range(calls):
                    await caller.call(Request(text="x"))
                elapsed = time.perf_counter() - begin
            nursery.cancel_scope.cancel()
            return elapsed

    return trio.run(main)


# -- in process: aio ----------------------------------------------------------------------------


def aio_batched(total: int) -> float:
    async def main() -> float:
        ticks = make_ticks(BATCH)
        async with (
            aio.Router() as router,
            router.subscribe("b", Tick, depth=DEPTH, overflow="block") as sub,
            router.publish("b", Tick) as pub,
        ):

            async def produce() -> None:
                for _ in range(total // BATCH):
                    await pub.send_many(ticks)

            begin = time.perf_counter()
            producer = asyncio.ensure_future(produce())
            got = 0
            while got < total:
                got += len(await sub.receive_batch(DEPTH))
            await producer
            return time.perf_counter() - begin

    return asyncio.run(main())


def aio_per_message(total: int) -> float:
    async def main() -> float:
        ticks = make_ticks(BATCH)
        async with (
            aio.Router() as router,
            router.subscribe("p", Tick, depth=DEPTH, overflow="block") as sub,
            router.publish("p", Tick) as pub,
        ):

            async def produce() -> None:
                for i in range(total):
                    await pub.send(ticks[i % BATCH])

            begin = time.perf_counter()
            producer = asyncio.ensure_future(produce())
            for _ in range(total):
                await sub.receive()
            await producer
            return time.perf_counter() - begin

    return asyncio.run(main())


def aio_round_trip(calls: int) -> float:
    async def main() -> float:
        async with (
            aio.Router() as router,
            aio.Service(router, "rpc", Request, Reply, lambda r: Reply(text=r.text)),
            aio.Caller(router, "rpc", Request, Reply) as caller,
        ):
            await caller.call(Request(text="warm"))
            begin = time.perf_counter()
            for _ in range(calls):
                await caller.call(Request(text="x"))
            return time.perf_counter() - begin

    return asyncio.run(main())


# -- in process: sync ---------------------------------------------------------------------------


def sync_batched(total: int) -> float:
    ticks = make_ticks(BATCH)
    with (
        sync.Router() as router,
        router.subscribe("b", Tick, depth=DEPTH, overflow="block") as sub,
        router.publish("b", Tick) as pub,
    ):

        def produce() -> None:
            for _ in range(total // BATCH):
                pub.send_many(ticks)

        begin = time.perf_counter()
        producer = threading.Thread(target=produce)
        producer.start()
        got = 0
        while got < total:
            got += len(sub.receive_batch(DEPTH))
        producer.join()
        return time.perf_counter() - begin


def sync_per_message(total: int) -> float:
    ticks = make_ticks(BATCH)
    with (
        sync.Router() as router,
        router.subscribe("p", Tick, depth=DEPTH, overflow="block") as sub,
        router.publish("p", Tick) as pub,
    ):

        def produce() -> None:
            for i in range(total):
                pub.send(ticks[i % BATCH])

        begin = time.perf_counter()
        producer = threading.Thread(target=produce)
        producer.start()
        for _ in range(total):
            sub.receive()
        producer.join()
        return time.perf_counter() - begin


def sync_round_trip(calls: int) -> float:
    with (
        sync.Router() as router,
        sync.Service(router, "rpc", Request, Reply, lambda r: Reply(text=r.text)),
        sync.Caller(router, "rpc", Request, Reply) as caller,
    ):
        caller.call(Request(text="warm"))
        begin = time.perf_counter()
        for _ in range(calls):
            caller.call(Request(text="x"))
        return time.perf_counter() - begin


# -- two processes ------------------------------------------------------------------------------


async def sink(rounds: int, total: int) -> None:
    """The child: a trio node that reports first-to-last arrival time per round of ``total``."""
    from dndm_p2p import Node

    async with (
        Node(CONFIG) as node,
        node.subscribe("facade.bench", Tick, depth=DEPTH, overflow="block") as sub,
    ):
        print(json.dumps({"addr": node.addrs[0]}), flush=True)
        for _ in range(rounds):
            got = len(await sub.receive_batch(DEPTH))
            first = time.perf_counter()
            while got < total:
                got += len(await sub.receive_batch(DEPTH))
            print(json.dumps({"seconds": time.perf_counter() - first}), flush=True)


async def trio_publish(addr: str, total: int) -> None:
    from dndm_p2p import Node

    ticks = make_ticks(BATCH)
    async with Node(CONFIG) as node:
        await node.connect(addr)
        async with node.publish("facade.bench", Tick) as out:
            await out.wait_interest()
            for _ in range(total // BATCH):
                await out.send_many(ticks)
            await trio.sleep(0.5)


async def aio_publish(addr: str, total: int) -> None:
    ticks = make_ticks(BATCH)
    async with aio.Node(CONFIG) as node:
        await node.connect(addr)
        async with node.publish("facade.bench", Tick) as out:
            await out.wait_interest()
            for _ in range(total // BATCH):
                await out.send_many(ticks)
            await asyncio.sleep(0.5)


def sync_publish(addr: str, total: int) -> None:
    ticks = make_ticks(BATCH)
    with sync.Node(CONFIG) as node:
        node.connect(addr, timeout=30)
        with node.publish("facade.bench", Tick) as out:
            out.wait_interest(timeout=30)
            for _ in range(total // BATCH):
                out.send_many(ticks, timeout=30)
            time.sleep(0.5)


def two_processes(total: int) -> dict[str, float]:
    """Rates (msg/s) of trio, aio and sync publishers to a trio node in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "benchmarks.bench_facades", "--sink", "3", str(total)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    rates: dict[str, float] = {}
    try:
        assert child.stdout is not None
        addr = json.loads(child.stdout.readline())["addr"]
        publishers: dict[str, Any] = {
            "trio": lambda: trio.run(trio_publish, addr, total),
            "aio": lambda: asyncio.run(aio_publish(addr, total)),
            "sync": lambda: sync_publish(addr, total),
        }
        for name, publish in publishers.items():
            publish()
            rates[name] = total / json.loads(child.stdout.readline())["seconds"]
            summary(f"  two processes, {name} publisher: {rates[name]:,.0f} msg/s")
    finally:
        child.kill()
        child.wait()
    return rates


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    """Measure and print every figure."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-zenoh", action="store_true")
    parser.add_argument("--sink", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        trio.run(sink, *args.sink)
        return
    scale = 10 if args.quick else 1
    batched_n = 2_000_000 // scale // BATCH * BATCH
    per_n = 200_000 // scale
    calls = 5_000 // scale
    net_n = 1_000_000 // scale // BATCH * BATCH
    r = args.repeats

    batched = {
        name: measure(lambda f=fn: f(batched_n), batched_n, repeats=r)
        for name, fn in (("trio", trio_batched), ("aio", aio_batched), ("sync", sync_batched))
    }
    emit("trio.inprocess.batched", batched["trio"].value, note=batched["trio"].describe())
    for name in ("aio", "sync"):
        emit(
            f"{name}.inprocess.batched",
            batched[name].value,
            baseline="trio.inprocess.batched",
            baseline_value=batched["trio"].value,
            note=batched[name].describe(),
        )

    per = {
        name: measure(lambda f=fn: f(per_n), per_n, repeats=r)
        for name, fn in (
            ("trio", trio_per_message),
            ("aio", aio_per_message),
            ("sync", sync_per_message),
        )
    }
    zenoh_m, zenoh_skip = (None, "disabled") if args.no_zenoh else measure_zenoh(per_n, r)
    if zenoh_m is None:
        emit_skipped("zenoh.inprocess.same_session", zenoh_skip or "unavailable")
    else:
        emit("zenoh.inprocess.same_session", zenoh_m.value, note=zenoh_m.describe())
    emit("trio.inprocess.per_message", per["trio"].value, note=per["trio"].describe())
    emit(
        "aio.inprocess.per_message",
        per["aio"].value,
        baseline="zenoh.inprocess.same_session",
        baseline_value=None if zenoh_m is None else zenoh_m.value,
        note=per["aio"].describe() + f"; vs trio {per['aio'].value / per['trio'].value:.3f}",
    )
    emit(
        "sync.inprocess.per_message",
        per["sync"].value,
        baseline="trio.inprocess.per_message",
        baseline_value=per["trio"].value,
        note=per["sync"].describe(),
    )

    round_trip: dict[str, float] = {}
    for name, fn in (("trio", trio_round_trip), ("aio", aio_round_trip), ("sync", sync_round_trip)):
        runs = [fn(calls) / calls * 1e6 for _ in range(r)]
        round_trip[name] = statistics.median(runs)
        summary(f"  round trip {name}: {', '.join(f'{x:.1f}' for x in runs)} µs")
    emit("trio.rpc.round_trip", round_trip["trio"], unit="µs", note="core.rpc Caller/Service")
    for name in ("aio", "sync"):
        emit(
            f"{name}.rpc.round_trip",
            round_trip[name],
            unit="µs",
            baseline="trio.rpc.round_trip",
            baseline_value=round_trip["trio"],
            note=f"{round_trip[name] - round_trip['trio']:+.1f} µs vs trio; core.rpc, facade",
        )

    net = two_processes(net_n)
    emit("trio.two_processes.batched", net["trio"], note=f"one run of {net_n:,}")
    for name in ("aio", "sync"):
        emit(
            f"{name}.two_processes.batched",
            net[name],
            baseline="trio.two_processes.batched",
            baseline_value=net["trio"],
            note=f"one run of {net_n:,}",
        )

    summary(
        "targets: aio batched >= 50% of trio: "
        f"{batched['aio'].value / batched['trio'].value:.0%}; "
        "aio per-message >= zenoh same-session: "
        + ("n/a" if zenoh_m is None else f"{per['aio'].value / zenoh_m.value:.2f}x")
        + f"; aio round trip - trio: {round_trip['aio'] - round_trip['trio']:+.1f} µs (<= 50)"
    )


if __name__ == "__main__":
    main()
