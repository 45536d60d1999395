"""dndm_p2p.sync: the trio core driven from plain threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dndm_p2p import CallbackError, Closed, NoInterest, Timeout, sync
from tests.proto.messages_pb2 import Foo, Reply, Request, Sample

ROOT = Path(__file__).resolve().parents[2]


def _our_threads() -> set[threading.Thread]:
    """Live threads, except trio's idle worker cache (daemons trio keeps for 10 s after use)."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread ")}


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> object:
    before = _our_threads()
    yield
    assert _our_threads() == before, f"threads left behind: {_our_threads() - before}"


def test_the_readme_example() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import threads_quickstart
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert threads_quickstart.main(200) == 200


def test_threaded_producers_and_a_consumer() -> None:
    with (
        sync.Router() as router,
        router.subscribe("t.x", Sample, depth=256, overflow="block") as sub,
        router.publish("t.x", Sample) as pub,
    ):
        pub.wait_interest(timeout=5)

        def produce(first: int) -> None:
            for seq in range(first, first + 1000):
                pub.send(Sample(seq=seq), timeout=10)

        producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
        for thread in producers:
            thread.start()
        got = [sub.receive(timeout=10).seq for _ in range(3000)]
        for thread in producers:
            thread.join(timeout=10)
        assert sorted(got) == list(range(3000))
        for k in range(3):  # each producer's messages keep their order
            mine = [s for s in got if k * 1000 <= s < (k + 1) * 1000]
            assert mine == sorted(mine)
        pub.send_many([Sample(seq=s) for s in range(10)])
        assert [m.seq for m in sub.receive_batch(100, timeout=5)] == list(range(10))


def test_timeouts_errors_and_iteration_end() -> None:
    with sync.Router() as router:
        sub = router.subscribe("t.y", Foo)
        started = time.monotonic()
        with pytest.raises(Timeout):
            sub.receive(timeout=0.05)
        assert time.monotonic() - started < 5
        with router.publish("t.none", Foo, no_interest="raise") as out, pytest.raises(NoInterest):
            out.send(Foo(text="nobody"))
        with pytest.raises(Closed):
            out.send(Foo(text="closed"))
        closer = threading.Timer(0.05, sub.close)
        closer.start()
        assert list(sub) == []  # iteration ends when the interest closes
        closer.join()
        with pytest.raises(Timeout), sync.Caller(router, "svc", Request, Reply) as caller:
            caller.call(Request(), timeout=0.05)


def test_callbacks_run_on_the_pool_and_a_failure_closes_the_interest() -> None:
    with sync.Router(callback_workers=1) as router:
        seen: list[tuple[int, str]] = []
        three = threading.Event()

        def on_sample(msg: Sample) -> None:
            seen.append((msg.seq, threading.current_thread().name))
            if len(seen) == 3:
                three.set()

        def failing(msg: Sample) -> None:
            raise ValueError("bad")

        ok = router.subscribe("t.cb", Sample, callback=on_sample)
        bad = router.subscribe("t.cb", Sample, callback=failing)
        with router.publish("t.cb", Sample) as out:
            for seq in (1, 2, 3):
                out.send(Sample(seq=seq))
            assert three.wait(5)
        assert [s for s, _ in seen] == [1, 2, 3]
        assert all(name.startswith("dndm-p2p callback") for _, name in seen)
        deadline = time.monotonic() + 5
        while bad.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(bad.error, CallbackError)
        ok.close()


def test_request_reply_through_the_core_caller_and_service() -> None:
    with (
        sync.Router() as router,
        sync.Service(router, "svc", Request, Reply, lambda r: Reply(text=r.text.upper())),
        sync.Caller(router, "svc", Request, Reply) as caller,
    ):
        results: list[str] = []

        def call(i: int) -> None:
            results.append(caller.call(Request(text=f"x{i}"), timeout=10).text)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert sorted(results) == sorted(f"X{i}" for i in range(8))


def test_open_and_close_without_with_and_twice() -> None:
    router = sync.Router().open()
    handle = router.publish("t.open", Foo)
    router.close()
    router.close()
    assert handle.closed
    with pytest.raises(Closed):
        router.publish("t.open", Foo)


CTRL_C_CHILD = """
import sys
from dndm_p2p import sync
from tests.proto.messages_pb2 import Foo
try:
    with sync.Router() as router, router.subscribe("t.c", Foo) as sub:
        print("ready", flush=True)
        sub.receive()
except KeyboardInterrupt:
    print("stopped", flush=True)
    sys.exit(130)
"""


@pytest.mark.timeout(60)
def test_ctrl_c_in_a_blocking_receive_exits_cleanly_with_130() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, err
    assert "stopped" in out
    assert "Traceback" not in err, err
