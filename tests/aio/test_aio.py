"""dndm_p2p.aio: the trio core driven from asyncio programs, in one loop with other asyncio work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import trio

from dndm_p2p import CallbackError, Closed, NoInterest, Timeout, TypeMismatch, aio
from dndm_p2p.aio.runtime import GuestRuntime
from tests.proto.messages_pb2 import Bar, Foo, Reply, Request, Sample

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _our_threads() -> set[threading.Thread]:
    """Live threads, except trio's idle worker cache (daemons trio keeps for 10 s after use:
    the guest run waits for I/O in one of them)."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread ")}


def run(coro_fn: object) -> object:
    """``asyncio.run`` the test body, then check that no task and no thread is left."""
    threads_before = _our_threads()

    async def checked() -> object:
        result = await coro_fn()  # type: ignore[operator]
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"asyncio tasks left behind: {others}"
        return result

    result = asyncio.run(checked())
    left = _our_threads() - threads_before
    assert not left, f"threads left behind: {left}"
    return result


def test_the_readme_example_runs_under_asyncio_run() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import asyncio_quickstart
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert run(asyncio_quickstart.main) == 21.5


def test_publish_subscribe_iterate_and_batches() -> None:
    async def body() -> None:
        async with aio.Router() as router:
            async with (
                router.subscribe("a.b", Sample, depth=4096, overflow="block") as sub,
                router.publish("a.b", Sample) as pub,
            ):
                assert await pub.wait_interest()
                for seq in range(1, 501):
                    await pub.send(Sample(seq=seq))
                await pub.send_many([Sample(seq=seq) for seq in range(501, 1001)])
                got = [m.seq for m in await sub.receive_batch(300)]
                while len(got) < 1000:
                    got.append((await sub.receive()).seq)
                assert got == list(range(1, 1001))
                waiter = asyncio.ensure_future(sub.receive())
                await asyncio.sleep(0.01)
                assert not waiter.done()
                await pub.send(Sample(seq=7))
                assert (await waiter).seq == 7
                pub.close()
                sub.close()
                assert [m async for m in sub] == []
            assert router.routes() == []

    run(body)


def test_errors_are_the_core_classes() -> None:
    async def body() -> None:
        async with aio.Router() as router:
            async with router.publish("x", Foo, no_interest="raise") as out:
                with pytest.raises(NoInterest):
                    await out.send(Foo(text="nobody"))
                with pytest.raises(TypeMismatch):
                    await out.send(Bar(a=1))  # type: ignore[arg-type]
            with pytest.raises(Closed):
                await out.send(Foo(text="closed"))
            sub = router.subscribe("y", Foo)
            waiting = asyncio.ensure_future(sub.receive())
            await asyncio.sleep(0.01)
            sub.close()
            with pytest.raises(Closed):
                await waiting
            with pytest.raises(Timeout):
                async with aio.Caller(router, "svc", Request, Reply) as caller:
                    await caller.call(Request(), timeout=0.05)

    run(body)


def test_cancelling_an_asyncio_task_cancels_the_trio_work() -> None:
    async def body() -> None:
        async with aio.Router() as router:
            ended = asyncio.Event()
            cancelled: list[bool] = []

            async def trio_work() -> None:
                try:
                    await trio.sleep_forever()
                except trio.Cancelled:
                    cancelled.append(True)
                    raise
                finally:
                    ended.set()

            task = asyncio.ensure_future(router.runtime.run(trio_work))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert ended.is_set()
            assert cancelled == [True]
            async with router.subscribe("z", Foo) as sub:
                receiving = asyncio.ensure_future(sub.receive())
                await asyncio.sleep(0.01)
                receiving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await receiving
                async with router.publish("z", Foo) as out:
                    await out.send(Foo(text="after"))
                    assert (await asyncio.wait_for(sub.receive(), 5)).text == "after"

    run(body)


def test_cancelling_the_trio_side_cancels_the_asyncio_task() -> None:
    async def body() -> None:
        async with aio.Router() as router:
            runtime: GuestRuntime = router.runtime
            started = asyncio.Event()
            outcome: list[str] = []

            async def asyncio_work() -> None:
                started.set()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    outcome.append("cancelled")
                    raise

            async def trio_side() -> str:
                with trio.move_on_after(0.05):
                    await runtime.await_asyncio(asyncio_work())
                return "moved on"

            assert await runtime.run(trio_side) == "moved on"
            assert started.is_set()
            assert outcome == ["cancelled"]

    run(body)


def test_callbacks_plain_and_coroutine_and_failing() -> None:
    async def body() -> None:
        async with aio.Router() as router:
            plain: list[int] = []
            awaited: list[int] = []
            done = asyncio.Event()

            async def on_sample(msg: Sample) -> None:
                await asyncio.sleep(0)
                awaited.append(msg.seq)
                if len(awaited) == 3:
                    done.set()

            def failing(msg: Sample) -> None:
                raise ValueError("bad sample")

            a = router.subscribe("cb", Sample, callback=lambda m: plain.append(m.seq))
            b = router.subscribe("cb", Sample, callback=on_sample)
            c = router.subscribe("cb", Sample, callback=failing)
            async with router.publish("cb", Sample) as out:
                for seq in (1, 2, 3):
                    await out.send(Sample(seq=seq))
                await asyncio.wait_for(done.wait(), 5)
            assert plain == [1, 2, 3]
            assert awaited == [1, 2, 3]
            assert isinstance(c.error, CallbackError)
            with pytest.raises(CallbackError):
                async with c:
                    pass
            a.close()
            b.close()

    run(body)


def test_request_reply_through_the_core_caller_and_service() -> None:
    async def body() -> None:
        async with aio.Router() as router:

            async def double(request: Request) -> Reply:
                await asyncio.sleep(0)
                return Reply(text=request.text * 2)

            async with (
                aio.Service(router, "math.double", Request, Reply, double) as service,
                aio.Caller(router, "math.double", Request, Reply) as caller,
            ):
                calls = (caller.call(Request(text=str(i))) for i in range(10))
                replies = await asyncio.gather(*calls)
                assert [r.text for r in replies] == [str(i) * 2 for i in range(10)]
                assert service.served == 10

    run(body)


def test_an_asyncio_server_and_a_subscription_share_one_loop() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import asyncio_server
    finally:
        sys.path.remove(str(ROOT / "examples"))

    async def body() -> None:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.ensure_future(asyncio_server.serve(0, ready))
        port = await asyncio.wait_for(ready, 10)

        def get() -> dict[str, float]:
            url = f"http://127.0.0.1:{port}/temp"
            with urllib.request.urlopen(url, timeout=5) as reply:
                return json.loads(reply.read())  # type: ignore[no-any-return]

        readings = []
        for _ in range(50):
            readings.append((await asyncio.to_thread(get))["celsius"])
            if len([r for r in readings if r == r]) >= 2 and readings[-1] > readings[0]:
                break
            await asyncio.sleep(0.02)
        assert readings[-1] >= 20.0, readings
        assert readings[-1] > readings[0], readings
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server

    asyncio.run(body())


def test_leaving_the_loop_stops_a_runtime_left_open() -> None:
    async def body() -> None:
        router = aio.Router()
        await router.__aenter__()
        router.publish("left.open", Foo)
        # asyncio.run cancels the runtime's keeper task, which stops the trio run first.

    before = _our_threads()
    asyncio.run(body())
    assert _our_threads() == before


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_exits_cleanly_with_130() -> None:
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "asyncio_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/temp", timeout=10) as reply:
            assert reply.status == 200
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, err
    assert "stopped" in out
    assert "Traceback" not in err, err
    assert "abandoned" not in err, err


def _peer(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.facade_peer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("subscriber", "publisher"), [("aio", "sync"), ("sync", "aio")])
def test_a_node_across_two_processes(subscriber: str, publisher: str) -> None:
    sub = _peer(subscriber, "sub", "", "100")
    pub: subprocess.Popen[str] | None = None
    try:
        assert sub.stdout is not None
        addr = json.loads(sub.stdout.readline())["addr"]
        pub = _peer(publisher, "pub", addr, "100")
        out, err = sub.communicate(timeout=90)
        assert sub.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"received": 100, "last": 100}
        _pub_out, pub_err = pub.communicate(timeout=30)
        assert pub.returncode == 0, pub_err
    finally:
        for child in (sub, pub):
            if child is not None:
                child.kill()
                child.wait()
