"""Request and reply: Caller and Service, in process and across nodes."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from dndm_p2p import ConfigError, Router, Timeout
from dndm_p2p.core.rpc import Caller, Service
from tests.proto.messages_pb2 import Foo, Reply, Request
from tests.support.nodes import mesh


def shout(request: Request) -> Reply:
    return Reply(text=request.text.upper())


async def test_calls_get_their_own_replies(router: Router) -> None:
    service = Service(router, "svc", Request, Reply, shout)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        async with Caller(router, "svc", Request, Reply) as caller:
            results: dict[str, str] = {}

            async def ask(text: str) -> None:
                results[text] = (await caller.call(Request(text=text), timeout=5)).text

            async with trio.open_nursery() as callers:
                for word in ("a", "bb", "ccc"):
                    callers.start_soon(ask, word)
        assert results == {"a": "A", "bb": "BB", "ccc": "CCC"}
        nursery.cancel_scope.cancel()


async def test_R14_a_timed_out_call_never_gets_a_late_reply_and_never_crashes(
    router: Router,
) -> None:
    """R14: the Go Caller delivered into a waiter that a timeout had just closed (a panic), and
    matched replies first-in first-out, so one slow reply shifted every later answer."""
    release = trio.Event()

    async def slow_first(request: Request) -> Reply:
        if request.text == "slow":
            await release.wait()
        return Reply(text=request.text)

    service = Service(router, "svc", Request, Reply, slow_first)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        async with Caller(router, "svc", Request, Reply) as caller:
            with pytest.raises(Timeout):
                await caller.call(Request(text="slow"), timeout=0.05)
            release.set()
            # The late reply to "slow" arrives now; it must not answer this call.
            assert (await caller.call(Request(text="next"), timeout=5)).text == "next"
            await trio.testing.wait_all_tasks_blocked()
            assert caller.unmatched == 1
        nursery.cancel_scope.cancel()


async def test_a_slow_caller_does_not_delay_another(router: Router) -> None:
    """R14: one slow HandleReplies handler blocked the single response loop for all callers."""
    service = Service(router, "svc", Request, Reply, shout)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve)
        async with (
            Caller(router, "svc", Request, Reply) as lazy,
            Caller(router, "svc", Request, Reply) as busy,
        ):
            # lazy never collects anything; busy still gets every answer promptly.
            for i in range(200):
                assert (await busy.call(Request(text=f"x{i}"), timeout=5)).text == f"X{i}"
            assert lazy.unmatched == 200
        nursery.cancel_scope.cancel()


async def test_calls_across_nodes() -> None:
    async with mesh(2) as (a, b):
        service = Service(a, "remote.svc", Request, Reply, shout)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve)
            async with Caller(b, "remote.svc", Request, Reply) as caller:
                for word in ("one", "two"):
                    assert (await caller.call(Request(text=word), timeout=10)).text == word.upper()
            nursery.cancel_scope.cancel()


async def test_message_types_need_a_correlation_field(router: Router) -> None:
    with pytest.raises(ConfigError, match="uint64 field 'nonce'"):
        Caller(router, "svc", Foo, Reply)
