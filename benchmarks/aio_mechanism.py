"""Which way should asyncio code drive trio code?  Measures the two candidates on this machine.

Run it as ``python -m benchmarks.aio_mechanism [--count N]``; one JSON line per figure.

* ``guest``: trio as a guest run on the asyncio loop (``dndm_p2p.aio``): one thread; asyncio
  calls trio's synchronous operations directly and awaits a trio task only to wait.
* ``thread``: trio in its own thread; asyncio reaches it with ``TrioToken.run_sync_soon`` and
  trio answers with ``loop.call_soon_threadsafe`` (the least a thread bridge must do).

Three figures for each, on one in-process route of 64-byte ``Tick`` messages:

* ``round_trip``: an asyncio task sends a ping, a trio task echoes it on another route, the
  asyncio task awaits the echo (µs per round trip, median of the runs);
* ``per_message``: asyncio sends single messages, an asyncio consumer awaits each one;
* ``batched``: a trio producer sends batches of 256, an asyncio consumer takes whole batches.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from benchmarks.common import emit, make_ticks, summary
from benchmarks.proto.bench_pb2 import Tick
from dndm_p2p import Router, aio

BATCH = 256


async def _echo(router: Router, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with (
        router.subscribe("ping", Tick, depth=4096, overflow="block") as pings,
        router.publish("pong", Tick) as pongs,
    ):
        task_status.started()
        async for msg in pings:
            await pongs.send(msg)


async def _producer(
    router: Router, total: int, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    ticks = make_ticks(BATCH)
    async with router.publish("bulk", Tick) as out:
        task_status.started()
        await out.wait_interest()
        for _ in range(total // BATCH):
            await out.send_many(ticks)


# -- guest mode ---------------------------------------------------------------------------------


async def guest_case(case: str, count: int) -> float:
    async with aio.Router() as router:
        runtime = router.runtime
        trio_router = router.trio
        if case == "round_trip":

            async def start_echo() -> None:
                async with trio.open_nursery() as nursery:
                    await nursery.start(_echo, trio_router)
                    started.set()
                    await trio.sleep_forever()

            started = asyncio.Event()
            echo = asyncio.ensure_future(runtime.run(start_echo))
            await started.wait()
            async with (
                router.subscribe("pong", Tick) as pongs,
                router.publish("ping", Tick) as pings,
            ):
                await pings.wait_interest()
                msg = make_ticks(1)[0]
                begin = time.perf_counter()
                for _ in range(count):
                    await pings.send(msg)
                    await pongs.receive()
                elapsed = time.perf_counter() - begin
            echo.cancel()
            await asyncio.gather(echo, return_exceptions=True)
            return elapsed
        if case == "per_message":
            ticks = make_ticks(1024)
            async with (
                router.subscribe("one", Tick, depth=4096, overflow="block") as sub,
                router.publish("one", Tick) as pub,
            ):

                async def consume() -> None:
                    for _ in range(count):
                        await sub.receive()

                begin = time.perf_counter()
                consumer = asyncio.ensure_future(consume())
                for i in range(count):
                    await pub.send(ticks[i & 1023])
                await consumer
                return time.perf_counter() - begin
        async with router.subscribe("bulk", Tick, depth=8192, overflow="block") as bulk:
            begin = time.perf_counter()
            producer = asyncio.ensure_future(runtime.run(_producer, trio_router, count))
            got = 0
            while got < count:
                got += len(await bulk.receive_batch(4096))
            await producer
            return time.perf_counter() - begin


# -- trio thread --------------------------------------------------------------------------------


class ThreadBridge:
    """The least a trio-thread bridge does: run_sync_soon in, call_soon_threadsafe out."""

    def __init__(self) -> None:
        self.router = Router()
        self.ready = threading.Event()
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        self.ready.wait()

    async def _main(self) -> None:
        async with self.router, trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set()
            await trio.sleep_forever()

    def soon(self, fn: Callable[[], object]) -> None:
        assert self.token is not None
        self.token.run_sync_soon(fn)

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        async def task() -> None:
            value = await fn(*args)
            loop.call_soon_threadsafe(future.set_result, value)

        assert self.nursery is not None
        nursery = self.nursery
        self.soon(lambda: nursery.start_soon(task))
        return await future

    def stop(self) -> None:
        assert self.nursery is not None
        nursery = self.nursery
        self.soon(nursery.cancel_scope.cancel)
        self.thread.join()


async def thread_case(case: str, count: int) -> float:
    bridge = ThreadBridge()
    router = bridge.router
    try:
        if case == "round_trip":
            ready = asyncio.get_running_loop().create_future()

            async def setup() -> Any:
                return router.subscribe("pong", Tick), router.publish("ping", Tick)

            await bridge.run(lambda: _start(bridge, _echo, router))
            pongs, pings = await bridge.run(setup)
            await bridge.run(pings.wait_interest)
            msg = make_ticks(1)[0]
            del ready
            begin = time.perf_counter()
            for _ in range(count):
                bridge.soon(lambda: pings.send_nowait(msg))
                await bridge.run(pongs.receive)
            return time.perf_counter() - begin
        if case == "per_message":
            ticks = make_ticks(1024)

            async def declare() -> Any:
                return router.subscribe("one", Tick, depth=4096, overflow="block"), router.publish(
                    "one", Tick
                )

            sub, pub = await bridge.run(declare)

            async def consume() -> None:
                for _ in range(count):
                    await bridge.run(sub.receive)

            begin = time.perf_counter()
            consumer = asyncio.ensure_future(consume())
            for i in range(count):
                await bridge.run(pub.send, ticks[i & 1023])
            await consumer
            return time.perf_counter() - begin

        async def declare_bulk() -> Any:
            return router.subscribe("bulk", Tick, depth=8192, overflow="block")

        bulk = await bridge.run(declare_bulk)
        begin = time.perf_counter()
        producer = asyncio.ensure_future(
            bridge.run(lambda: _start(bridge, _producer, router, count))
        )
        got = 0
        while got < count:
            got += len(await bridge.run(bulk.receive_batch, 4096))
        await producer
        return time.perf_counter() - begin
    finally:
        bridge.stop()


async def _start(bridge: ThreadBridge, fn: Any, *args: Any) -> None:
    assert bridge.nursery is not None
    await bridge.nursery.start(fn, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    counts = {
        "round_trip": args.count // 4,
        "per_message": args.count,
        "batched": args.count * 20 // BATCH * BATCH,
    }
    results: dict[tuple[str, str], float] = {}
    for case, count in counts.items():
        for mech, fn in (("guest", guest_case), ("thread", thread_case)):
            best = min(asyncio.run(fn(case, count)) for _ in range(args.repeats))
            results[(mech, case)] = best
            summary(f"{mech:6} {case:12} {best / count * 1e6:8.2f} µs/msg  {count / best:12,.0f}/s")
    for case, count in counts.items():
        guest = results[("guest", case)]
        thread = results[("thread", case)]
        if case == "round_trip":
            g, t = guest / count * 1e6, thread / count * 1e6
            emit("mechanism.thread.round_trip", t, unit="µs")
            emit(
                "mechanism.guest.round_trip",
                g,
                unit="µs",
                baseline="mechanism.thread.round_trip",
                baseline_value=t,
            )
        else:
            g, t = count / guest, count / thread
            emit(f"mechanism.thread.{case}", t)
            emit(
                f"mechanism.guest.{case}", g, baseline=f"mechanism.thread.{case}", baseline_value=t
            )


if __name__ == "__main__":
    main()
