"""Request and reply: Caller and Service, in process and across nodes in one process.

The Go original's caller/service scenarios are here where they apply: replies matched to their
own call (not first-in first-out), streaming replies, several services, closing while calls
are pending, a slow handler not blocking other callers, and R14's race (a reply arriving for a
call that just timed out).  Across OS processes: ``tests/node/test_rpc_multiprocess.py``.
"""

from __future__ import annotations

import runpy
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from dndm_p2p import (
    Caller,
    Closed,
    RemoteError,
    Router,
    Service,
    Timeout,
    TypeMismatch,
    Unavailable,
    WouldBlock,
)
from dndm_p2p.core import rpc
from dndm_p2p.core.rpc import RpcConfig
from dndm_p2p.errors import ConfigError, PermanentError
from protocols.v1.rpc_pb2 import RpcRequest
from tests.proto.messages_pb2 import Bar, Foo, Reply, Request
from tests.support.nodes import mesh


def shout(request: Foo) -> Foo:
    return Foo(text=request.text.upper())


async def test_any_message_types_work_and_calls_get_their_own_replies(router: Router) -> None:
    async with (
        router.service("svc", Foo, Foo, shout),
        router.caller("svc", Foo, Foo) as caller,
    ):
        results: dict[str, str] = {}

        async def ask(text: str) -> None:
            results[text] = (await caller.call(Foo(text=text), timeout=5)).text

        async with trio.open_nursery() as callers:
            for word in ("a", "bb", "ccc"):
                callers.start_soon(ask, word)
    assert results == {"a": "A", "bb": "BB", "ccc": "CCC"}


async def test_replies_answered_out_of_order_reach_their_own_calls(router: Router) -> None:
    """The Go Caller gave a reply without a nonce to the oldest waiting call (FIFO), so replies
    answered out of order went to the wrong calls."""
    gates = {word: trio.Event() for word in ("first", "second", "third")}

    async def in_reverse(request: Foo) -> Foo:
        await gates[request.text].wait()
        return Foo(text=request.text.upper())

    async with (
        router.service("r", Foo, Foo, in_reverse),
        router.caller("r", Foo, Foo) as caller,
        trio.open_nursery() as nursery,
    ):
        results: dict[str, str] = {}

        async def ask(text: str) -> None:
            results[text] = (await caller.call(Foo(text=text), timeout=5)).text

        for word in gates:
            nursery.start_soon(ask, word)
            await trio.testing.wait_all_tasks_blocked()
        for word in reversed(list(gates)):
            gates[word].set()
            await trio.testing.wait_all_tasks_blocked()
    assert results == {"first": "FIRST", "second": "SECOND", "third": "THIRD"}


async def test_in_process_requests_and_replies_are_not_copied(router: Router) -> None:
    seen: list[Foo] = []
    answer = Bar(a=7)

    def keep(request: Foo) -> Bar:
        seen.append(request)
        return answer

    request = Foo(text="x")
    async with router.service("svc", Foo, Bar, keep), router.caller("svc", Foo, Bar) as caller:
        reply = await caller.call(request, timeout=5)
    assert seen[0] is request
    assert reply is answer
    assert request == Foo(text="x")  # the Go Caller wrote its nonce into the request


async def test_a_stream_of_replies_ends_when_the_service_ends_it(router: Router) -> None:
    async def count(request: Bar) -> AsyncIterator[Bar]:
        for i in range(request.a):
            yield Bar(a=i)

    async with router.service("count", Bar, Bar, count), router.caller("count", Bar, Bar) as caller:
        got = [reply.a async for reply in caller.stream(Bar(a=3), timeout=5)]
        assert got == [0, 1, 2]
        assert [reply.a async for reply in caller.stream(Bar(a=0), timeout=5)] == []
        await trio.testing.wait_all_tasks_blocked()
        assert caller.unmatched == 0


async def test_a_sync_generator_streams_too_and_call_takes_the_first(router: Router) -> None:
    def words(request: Foo) -> Iterator[Foo]:
        yield from (Foo(text=word) for word in request.text.split())

    async with router.service("w", Foo, Foo, words), router.caller("w", Foo, Foo) as caller:
        got = [reply.text async for reply in caller.stream(Foo(text="a b c"), timeout=5)]
        assert got == ["a", "b", "c"]
        assert (await caller.call(Foo(text="x y"), timeout=5)).text == "x"
        with pytest.raises(RemoteError, match="sent no reply"):
            await caller.call(Foo(text=""), timeout=5)


async def test_a_caller_may_leave_a_stream_early(router: Router) -> None:
    def many(request: Bar) -> Iterator[Bar]:
        return (Bar(a=i) for i in range(50))

    async with router.service("m", Bar, Bar, many), router.caller("m", Bar, Bar) as caller:
        async with caller.stream(Bar(), timeout=5) as replies:
            async for reply in replies:
                assert reply.a == 0
                break
        assert (await caller.call(Bar(), timeout=5)).a == 0


async def test_a_handler_exception_reaches_the_caller_and_the_service_goes_on(
    router: Router,
) -> None:
    def picky(request: Foo) -> Foo:
        if request.text == "bad":
            raise ValueError("no bad words")
        return Foo(text="ok")

    service = router.service("p", Foo, Foo, picky)
    async with service, router.caller("p", Foo, Foo) as caller:
        with pytest.raises(RemoteError, match="no bad words") as caught:
            await caller.call(Foo(text="bad"), timeout=5)
        assert isinstance(caught.value, PermanentError)
        assert caught.value.kind == "ValueError"
        assert caught.value.route == "p"
        assert (await caller.call(Foo(text="good"), timeout=5)).text == "ok"
    assert (service.failed, service.served) == (1, 1)


async def test_a_reply_of_the_wrong_type_is_a_remote_error(router: Router) -> None:
    def wrong(request: Foo) -> Foo:
        return Bar(a=1)  # type: ignore[return-value]

    async with router.service("w", Foo, Foo, wrong), router.caller("w", Foo, Foo) as caller:
        with pytest.raises(RemoteError, match="returned Bar"):
            await caller.call(Foo(), timeout=5)


async def test_the_deadline_travels_with_the_request(router: Router) -> None:
    left: list[float] = []
    release = trio.Event()

    async def patient(request: Foo) -> Foo:
        left.append(trio.current_effective_deadline() - trio.current_time())
        if request.text == "slow":
            await release.wait()
        return Foo(text="done")

    service = router.service("d", Foo, Foo, patient)
    async with service, router.caller("d", Foo, Foo) as caller:
        assert (await caller.call(Foo(), timeout=3)).text == "done"
        assert 0 < left[0] <= 3
        with pytest.raises(Timeout) as caught:
            await caller.call(Foo(text="slow"), timeout=0.2)
        assert (caught.value.timeout, caught.value.route) == (0.2, "d")
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        # The service stopped at the deadline: nothing was sent for the timed-out call.
        assert service.expired == 1
        assert caller.unmatched == 0


async def test_R14_a_timed_out_call_never_gets_a_late_reply(router: Router) -> None:
    """R14: the Go Caller delivered into a waiter that a timeout had just closed (a panic), and
    matched replies first-in first-out, so one slow reply shifted every later answer."""
    release = trio.Event()

    async def slow_first(request: Request) -> Reply:
        if request.text == "slow":
            with trio.CancelScope(shield=True):  # answer late, past the deadline
                await release.wait()
        return Reply(text=request.text)

    async with (
        router.service("svc", Request, Reply, slow_first),
        router.caller("svc", Request, Reply) as caller,
    ):
        with pytest.raises(Timeout):
            await caller.call(Request(text="slow"), timeout=0.05)
        release.set()
        assert (await caller.call(Request(text="next"), timeout=5)).text == "next"
        await trio.testing.wait_all_tasks_blocked()


async def test_a_slow_handler_does_not_block_other_callers(router: Router) -> None:
    """R14: one slow HandleReplies handler blocked the single response loop for all callers."""
    release = trio.Event()

    async def maybe_slow(request: Foo) -> Foo:
        if request.text == "slow":
            await release.wait()
        return Foo(text=request.text)

    async with (
        router.service("s", Foo, Foo, maybe_slow, concurrency=2),
        router.caller("s", Foo, Foo) as lazy,
        router.caller("s", Foo, Foo) as busy,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(lazy.call, Foo(text="slow"))
        await trio.testing.wait_all_tasks_blocked()
        for i in range(50):
            assert (await busy.call(Foo(text=f"x{i}"), timeout=5)).text == f"x{i}"
        release.set()


async def test_a_lazy_stream_consumer_does_not_delay_another_caller(router: Router) -> None:
    def many(request: Bar) -> Iterator[Bar]:
        return (Bar(a=i) for i in range(request.a))

    async with (
        router.service("m", Bar, Bar, many),
        router.caller("m", Bar, Bar) as lazy,
        router.caller("m", Bar, Bar) as busy,
        lazy.stream(Bar(a=100), timeout=5) as ignored,
    ):
        assert (await ignored.__anext__()).a == 0  # then never read again
        for i in range(20):
            assert (await busy.call(Bar(a=i + 1), timeout=5)).a == 0


async def test_a_full_backlog_refuses_calls_at_once_as_transient(router: Router) -> None:
    release = trio.Event()
    left: list[float] = []

    async def slow(request: Foo) -> Foo:
        left.append(trio.current_effective_deadline() - trio.current_time())
        await release.wait()
        return request

    config = RpcConfig(concurrency=1, backlog=1, max_timeout=2)
    service = router.service("b", Foo, Foo, slow, config=config)
    async with service, router.caller("b", Foo, Foo) as caller, trio.open_nursery() as nursery:
        for _ in range(2):  # one handled, one waiting for the worker
            nursery.start_soon(partial(caller.call, Foo(), timeout=60))
            await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Unavailable, match="overloaded"):
            await caller.call(Foo(), timeout=5)
        assert service.overloaded == 1
        assert 0 < left[0] <= 2  # the service grants at most max_timeout
        release.set()


async def test_several_services_share_the_load_and_each_call_gets_one_answer(
    router: Router,
) -> None:
    """The Go original sent every request to every service (each answered)."""
    services = [router.service("lb", Foo, Foo, shout) for _ in range(3)]
    async with services[0], services[1], services[2], router.caller("lb", Foo, Foo) as caller:
        for i in range(30):
            assert (await caller.call(Foo(text=f"q{i}"), timeout=5)).text == f"Q{i}"
        await trio.testing.wait_all_tasks_blocked()
        assert caller.unmatched == 0
    assert [service.served for service in services] == [10, 10, 10]


async def test_calls_fall_back_to_the_remaining_services_when_one_closes(router: Router) -> None:
    first, second = router.service("f", Foo, Foo, shout), router.service("f", Foo, Foo, shout)
    async with second, router.caller("f", Foo, Foo) as caller:
        async with first:
            for _ in range(4):
                await caller.call(Foo(text="a"), timeout=5)
        for _ in range(4):
            assert (await caller.call(Foo(text="b"), timeout=5)).text == "B"
    assert (first.served, second.served) == (2, 6)


async def test_a_call_pending_at_a_service_that_closes_goes_to_another(router: Router) -> None:
    started = trio.Event()

    async def stuck(request: Foo) -> Foo:
        started.set()
        await trio.sleep_forever()
        raise AssertionError

    first, second = router.service("g", Foo, Foo, stuck), router.service("g", Foo, Foo, shout)
    async with first, second, router.caller("g", Foo, Foo) as caller:
        # Round-robin: the first call goes to the later service, the next to the stuck one.
        assert (await caller.call(Foo(text="a"), timeout=5)).text == "A"
        async with trio.open_nursery() as nursery:
            answers: list[str] = []

            async def ask() -> None:
                answers.append((await caller.call(Foo(text="b"), timeout=5)).text)

            nursery.start_soon(ask)
            await started.wait()
            await first.aclose()
        assert answers == ["B"]
        await trio.testing.wait_all_tasks_blocked()
        assert caller.unmatched == 0
    assert (first.served, second.served) == (0, 2)


async def test_a_call_waits_for_a_service_to_appear(router: Router) -> None:
    async with router.caller("late", Foo, Foo) as caller, trio.open_nursery() as nursery:
        answer: list[str] = []
        answered = trio.Event()

        async def ask() -> None:
            answer.append((await caller.call(Foo(text="hi"), timeout=5)).text)
            answered.set()

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        async with router.service("late", Foo, Foo, shout):
            await answered.wait()
    assert answer == ["HI"]


async def test_closing_the_caller_ends_pending_calls(router: Router) -> None:
    never = trio.Event()

    async def stuck(request: Foo) -> Foo:
        await never.wait()
        return request

    caller = router.caller("c", Foo, Foo)
    failures: list[BaseException] = []
    async with router.service("c", Foo, Foo, stuck), caller:

        async def ask() -> None:
            try:
                await caller.call(Foo(), timeout=5)
            except Closed as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            await caller.aclose()
        await caller.aclose()  # idempotent
        with pytest.raises(Closed):
            await caller.call(Foo(), timeout=1)
    assert len(failures) == 3


async def test_closing_a_service_abandons_its_calls_and_leaves_nothing(router: Router) -> None:
    started = trio.Event()

    async def stuck(request: Foo) -> Foo:
        started.set()
        await trio.sleep_forever()
        raise AssertionError

    service = router.service("c", Foo, Foo, stuck)
    async with router.caller("c", Foo, Foo) as caller, service:
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                with pytest.raises(Timeout):
                    await caller.call(Foo(), timeout=0.3)

            nursery.start_soon(ask)
            await started.wait()
            await service.aclose()
        await service.aclose()


async def test_serve_runs_a_service_in_a_nursery(router: Router) -> None:
    service = Service(router, "svc", Foo, Foo, shout)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        async with Caller(router, "svc", Foo, Foo) as caller:
            assert (await caller.call(Foo(text="x"), timeout=5)).text == "X"
        nursery.cancel_scope.cancel()


async def test_requests_of_the_wrong_type_and_bad_limits_are_refused(router: Router) -> None:
    async with router.caller("t", Foo, Foo) as caller:
        with pytest.raises(TypeMismatch):
            caller.stream(Bar())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"RpcConfig.concurrency"):
        RpcConfig(concurrency=0)
    with pytest.raises(ConfigError, match=r"RpcConfig.timeout"):
        router.caller("t", Foo, Foo, timeout=-1)


async def test_a_caller_bounds_its_open_calls(router: Router) -> None:
    never = trio.Event()

    async def stuck(request: Foo) -> Foo:
        await never.wait()
        return request

    config = RpcConfig(max_pending_calls=1)
    async with (
        router.service("p", Foo, Foo, stuck),
        router.caller("p", Foo, Foo, config=config) as caller,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(partial(caller.call, Foo(), timeout=30))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(WouldBlock, match="1 calls open"):
            await caller.call(Foo(), timeout=5)
        nursery.cancel_scope.cancel()


async def test_a_service_refuses_a_reply_route_outside_its_path(router: Router) -> None:
    service = router.service("own", Foo, Foo, shout)
    async with service, router.publish("own", RpcRequest) as forged:
        await forged.send(
            RpcRequest(
                call_id=1,
                reply_route="dndm.v1.RpcReply@elsewhere",
                timeout_us=1_000_000,
                target_handle=service._handle_id,
                origin=rpc._PROCESS_TOKEN,
                body=Foo(text="x").SerializeToString(),
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert (service.refused, service.served) == (1, 0)
        # No intent was declared on the forged reply route.
        assert [str(info.route) for info in router.routes()] == ["dndm.v1.RpcRequest@own"]


async def test_a_timed_out_call_carries_its_route_and_time_limit(router: Router) -> None:
    async with router.caller("nobody", Foo, Foo) as caller:
        with pytest.raises(TimeoutError) as caught:
            await caller.call(Foo(), timeout=0.05)
    assert isinstance(caught.value, Timeout)
    assert (caught.value.route, caught.value.timeout) == ("nobody", 0.05)


# -- across nodes (two nodes in this process, over 127.0.0.1) -------------------------------------


async def test_calls_across_nodes_both_ways() -> None:
    async def count(request: Bar) -> AsyncIterator[Bar]:
        for i in range(request.a):
            yield Bar(a=i)

    def picky(request: Foo) -> Foo:
        if not request.text:
            raise KeyError("empty")
        return shout(request)

    async with (
        mesh(2) as (a, b),
        a.service("on.a", Foo, Foo, picky),
        b.service("on.b", Bar, Bar, count),
        b.caller("on.a", Foo, Foo) as from_b,
        a.caller("on.b", Bar, Bar) as from_a,
    ):
        for word in ("one", "two"):
            assert (await from_b.call(Foo(text=word), timeout=10)).text == word.upper()
        with pytest.raises(RemoteError, match="empty") as caught:
            await from_b.call(Foo(), timeout=10)
        assert caught.value.kind == "KeyError"
        got = [reply.a async for reply in from_a.stream(Bar(a=4), timeout=10)]
        assert got == [0, 1, 2, 3]


async def test_services_on_two_nodes_share_the_calls_of_a_third() -> None:
    async with mesh(3) as (a, b, c):  # b and c are connected to a
        services = [b.service("shared", Foo, Foo, shout), c.service("shared", Foo, Foo, shout)]
        async with services[0], services[1], a.caller("shared", Foo, Foo) as caller:
            with trio.fail_after(20):
                assert await caller.wait_services(2) == 2
            for i in range(10):
                assert (await caller.call(Foo(text=f"x{i}"), timeout=10)).text == f"X{i}"
            assert [service.served for service in services] == [5, 5]
            # One goes away: every call is still answered, by the other one.
            await services[0].aclose()
            for i in range(6):
                assert (await caller.call(Foo(text=f"y{i}"), timeout=10)).text == f"Y{i}"
        assert [service.served for service in services] == [5, 11]


def test_the_request_reply_example_runs() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "request_reply.py"
    module = runpy.run_path(str(path), run_name="request_reply")
    assert trio.run(module["main"]) == [
        "100 C is 212 F",
        "in 1 h: 21 C",
        "in 2 h: 22 C",
        "in 3 h: 23 C",
        "refused: ValueError: below absolute zero",
    ]
