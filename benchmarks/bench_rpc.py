"""Request/reply round trips: ``Caller.call`` against a bare publish/subscribe echo.

Run it as ``python -m benchmarks.bench_rpc [--quick]``.  It prints one JSON object per line on
stdout (see :mod:`benchmarks.common`) and a summary on stderr.  Figures, each the median and p99
in microseconds of ``--count`` round trips of a 64-byte ``Tick`` after a warm-up, one call at a
time:

* ``rpc_rtt64_inprocess``: ``await caller.call(tick)`` to a service in the same router; its
  baseline ``echo_rtt64_inprocess`` publishes the request on one route and waits for the reply
  on another, with a subscriber task echoing each request object (what ``bench_network``'s
  ``rtt64`` measures between processes).
* ``rpc_rtt64_two_nodes``: the same between two ``Node``s of this process over 127.0.0.1
  (Noise, yamux), with its echo baseline ``echo_rtt64_two_nodes``.

The ratio is ``rpc / echo``: what the envelope, the per-call bookkeeping and the worker pool
cost over the bare route pair.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from benchmarks.common import emit, make_tick, summary
from benchmarks.proto.bench_pb2 import Tick
from dndm_p2p import NodeConfig, Router
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.node.node import Node

RoundTrip = Callable[[], Awaitable[None]]


async def timed(round_trip: RoundTrip, count: int, warmup: int) -> list[float]:
    """``count`` round trips after ``warmup`` ones, each in microseconds."""
    for _ in range(warmup):
        await round_trip()
    times: list[float] = []
    for _ in range(count):
        start = time.perf_counter_ns()
        await round_trip()
        times.append((time.perf_counter_ns() - start) / 1000)
    return times


def report(name: str, times: list[float], baseline: str | None, base: float | None) -> float:
    """Emit the median (with the p99 as an extra) and return the median."""
    ordered = sorted(times)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    emit(name, median, unit="us", baseline=baseline, baseline_value=base, p99=round(p99, 1))
    summary(f"{name}: median {median:.1f} us, p99 {p99:.1f} us over {len(ordered)}")
    return median


async def echo(requests: Interest[Tick], replies: Intent[Tick]) -> None:
    """The bare echo: every request object goes back on the reply route."""
    async for request in requests:
        await replies.send(request)


def answer(request: Tick) -> Tick:
    """The service's handler: the request itself is the reply."""
    return request


async def measure(
    here: Router | Node, there: Router | Node, label: str, count: int, warmup: int
) -> None:
    """The echo baseline, then the Caller/Service figure, on the same pair of places."""
    tick = make_tick(1)
    async with (
        there.subscribe("bench.echo.req", Tick, depth=64, overflow="block") as requests,
        there.publish("bench.echo.rep", Tick) as echoes,
        here.publish("bench.echo.req", Tick) as asks,
        here.subscribe("bench.echo.rep", Tick, depth=64, overflow="block") as answers,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(echo, requests, echoes)
        with trio.fail_after(30):
            await asks.wait_interest()
            await echoes.wait_interest()

        async def bare() -> None:
            await asks.send(tick)
            await answers.receive()

        base = report(f"echo_rtt64_{label}", await timed(bare, count, warmup), None, None)
        nursery.cancel_scope.cancel()
    async with (
        there.service("bench.rpc", Tick, Tick, answer),
        here.caller("bench.rpc", Tick, Tick) as caller,
    ):
        with trio.fail_after(30):
            await caller.wait_services()

        async def call() -> None:
            await caller.call(tick, timeout=10)

        report(f"rpc_rtt64_{label}", await timed(call, count, warmup), f"echo_rtt64_{label}", base)


async def amain(count: int, warmup: int) -> None:
    """Both suites, in process then between two nodes."""
    async with Router(name="bench") as router:
        await measure(router, router, "inprocess", count, warmup)
    async with (
        Node(NodeConfig(name="here", ping_interval=5.0, compression=False)) as here,
        Node(NodeConfig(name="there", ping_interval=5.0, compression=False)) as there,
    ):
        with trio.fail_after(30):
            await here.connect(there.addrs[0])
        await measure(here, there, "two_nodes", count // 4, warmup // 4)


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_rpc")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="a tenth of the round trips")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    trio.run(amain, args.count // scale, args.warmup // scale)


if __name__ == "__main__":
    main()
