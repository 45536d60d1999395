"""Regression tests for the Go original's in-process defects.

Each test is named after a defect in section 4 of ``shared/dndm-original.md`` and fails if that
defect came back.  The remote-link defects (H5 to H11 and others) are tested with the node.
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.lowlevel
import trio.testing

from dndm_p2p import Closed, PlainRoute, RouteError, Router, TypeMismatch, parse_route
from tests.proto.messages_pb2 import Bar, Foo
from tests.support.trio_checks import SpawnCounter


async def test_H1_no_consumer_steals_messages_from_another(router: Router) -> None:
    """H1: a router-level reader competed with a subscriber's reader on one channel, so about
    every other message was lost.  Here every subscriber has its own queue, and an idle one
    (never read) costs the others nothing."""
    async with (
        router.publish("x", Foo) as out,
        router.subscribe("x", Foo, depth=1000) as reader,
        router.subscribe("x", Foo, depth=1000) as idle,
    ):
        for i in range(500):
            await out.send(Foo(text=str(i)))
        assert [m.text for m in await reader.receive_batch(1000)] == [str(i) for i in range(500)]
        assert idle.stats.queued == 500


async def test_H2_a_late_producer_sees_existing_interest(router: Router) -> None:
    """H2: a second Publish on an already linked route was never notified and waited forever."""
    async with router.subscribe("x", Foo), router.publish("x", Foo) as first:
        await first.wait_interest()
        async with router.publish("x", Foo) as late:
            with trio.fail_after(1):
                links = await late.wait_interest()
            assert len(links) == 1


async def test_H3_interest_declared_before_the_intent_is_never_missed(router: Router) -> None:
    """H3: a notification sent before the first wrapper was attached was lost.  Linking is
    level-triggered: an intent created after its interests sees them at once."""
    async with router.subscribe("x", Foo):
        for _ in range(50):
            async with router.publish("x", Foo) as out:
                assert out.has_interest
                with trio.fail_after(1):
                    await out.wait_interest()


async def test_H4_closing_the_last_subscriber_leaves_nothing_that_blocks(router: Router) -> None:
    """H4: endpoint objects outlived the user's handles, filled up, blocked producers, and later
    subscribers first received stale messages."""
    async with router.publish("x", Foo) as out:
        sub = router.subscribe("x", Foo, depth=1, overflow="block")
        await out.send(Foo(text="stale"))
        sub.close()
        with trio.fail_after(1):
            for _ in range(10):
                await out.send(Foo(text="after close"))  # must not block
        assert [r.interests for r in router.routes()] == [0]
        async with router.subscribe("x", Foo) as fresh:
            await out.send(Foo(text="new"))
            assert [m.text for m in await fresh.receive_batch()] == ["new"]


async def test_R1_closing_a_subscriber_while_sending_is_safe(router: Router) -> None:
    """R1: a send raced the interest's asynchronous channel close and panicked."""
    rng = random.Random(1)
    async with router.publish("x", Foo) as out:
        subs = [router.subscribe("x", Foo, depth=4) for _ in range(20)]

        async def churn() -> None:
            for _ in range(200):
                victim = subs.pop(rng.randrange(len(subs)))
                victim.close()
                subs.append(router.subscribe("x", Foo, depth=4))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(churn)
            for i in range(2000):
                await out.send(Foo(text=str(i)))
        for sub in subs:
            sub.close()


async def test_R2_subscribing_after_an_intent_closed_is_safe(router: Router) -> None:
    """R2: notifying an already closed intent panicked."""
    out = router.publish("x", Foo)
    out.close()
    async with router.subscribe("x", Foo) as sub:
        assert not out.has_interest
        assert sub.intents == frozenset()


async def test_R3_intent_closing_during_a_blocked_send(router: Router) -> None:
    """R3: the output was cleared without the lock while a send used it.  A send blocked on a
    full subscriber fails cleanly with Closed when its intent closes."""
    async with router.subscribe("x", Foo, depth=1, overflow="block") as sub:
        out = router.publish("x", Foo)
        await out.send(Foo())

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            out.close()
            sub.receive_nowait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(Closed):
                await out.send(Foo())


async def test_R4_a_message_sent_right_after_linking_arrives(router: Router) -> None:
    """R4: data sent before the router's runners were hooked up went to an unread channel."""
    for i in range(20):
        sub = router.subscribe(f"x{i}", Foo)
        out = router.publish(f"x{i}", Foo)
        out.send_nowait(Foo(text="first"))
        assert sub.receive_nowait().text == "first"
        out.close()
        sub.close()


async def test_R5_closing_never_yields_none(router: Router) -> None:
    """R5: during close a runner forwarded nil messages in a tight loop."""
    got: list[object] = []
    async with router.publish("x", Foo) as out:
        sub = router.subscribe("x", Foo)

        async def consume() -> None:
            async for msg in sub:
                got.append(msg)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await out.send(Foo(text="a"))
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
    assert got == [Foo(text="a")]


async def test_R6_a_closed_interest_receives_nothing_more(router: Router) -> None:
    """R6: a forwarder read nil from a closed channel and tried to encode it.  A closed
    interest's queue is detached: later sends do not reach it, and it never returns None."""
    async with router.publish("x", Foo) as out:
        sub = router.subscribe("x", Foo)
        sub.close()
        await out.send_many([Foo()] * 10)
        assert len(sub.queue) == 0
        with pytest.raises(Closed):
            sub.receive_nowait()


async def test_R7_using_a_closed_handle_raises_closed(router: Router) -> None:
    """R7: Send and Route on a closed wrapper dereferenced nil and panicked."""
    out = router.publish("x", Foo)
    sub = router.subscribe("x", Foo)
    out.close()
    sub.close()
    assert str(out.route) == "dndm.test.Foo@x"  # still readable
    with pytest.raises(Closed):
        await out.send(Foo())
    with pytest.raises(Closed):
        await sub.receive()
    with pytest.raises(Closed):
        await out.wait_interest()
    with pytest.raises(Closed):
        await sub.wait_intent()


async def test_R8_closing_while_deliveries_are_pending_does_not_deadlock(router: Router) -> None:
    """R8: removing a wrapper held the router lock while waiting for runners that needed it."""
    async with router.publish("x", Foo) as out:
        subs = [router.subscribe("x", Foo, depth=1, overflow="block") for _ in range(3)]
        await out.send(Foo())
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(out.send, Foo())
                await trio.testing.wait_all_tasks_blocked()
                for sub in subs:
                    sub.close()


async def test_R9_declaring_after_the_router_closed_raises_closed() -> None:
    """R9: Linker.Close set its maps to nil, and a later add panicked."""
    async with Router() as router:
        router.publish("x", Foo)
        router.close()
        with pytest.raises(Closed):
            router.publish("x", Foo)
        with pytest.raises(Closed):
            router.subscribe("x", Foo)


async def test_R10_a_stale_close_never_unlinks_the_current_link(router: Router) -> None:
    """R10: a stale link's close callback deleted the current link entry of the same route."""
    async with router.publish("x", Foo) as out:
        old = router.subscribe("x", Foo)
        old.close()
        async with router.subscribe("x", Foo) as current:
            old.close()  # a second close of the stale handle
            assert {link.handle_id for link in out.interests} == {current.handle_id}
            await out.send(Foo(text="still linked"))
            assert current.receive_nowait().text == "still linked"


async def test_R13_snapshots_during_concurrent_changes_are_consistent(router: Router) -> None:
    """R13: Close and Intent()/Interest() read shared slices without the owner's lock."""
    handles = []
    for i in range(100):
        handles.append(router.publish(f"r{i % 7}", Foo))
        handles.append(router.subscribe(f"r{i % 5}", Foo))
        for info in router.routes():
            assert info.intents >= 0
            assert info.interests >= 0
        if i % 3 == 0:
            handles.pop(random.Random(i).randrange(len(handles))).close()
    total = sum(info.intents for info in router.routes())
    assert total == sum(1 for h in handles if hasattr(h, "send"))
    for handle in handles:
        handle.close()


async def test_L1_a_failed_declaration_leaves_nothing_registered(router: Router) -> None:
    """L1: the freshly created object was never closed when its wrapper or callback failed."""
    async with router.publish("x", Foo):
        with pytest.raises(TypeMismatch):
            router.publish("dndm.test.Bar@x", Foo)
        with pytest.raises(RouteError):
            router.subscribe("x.**y", Foo)
        with pytest.raises(RouteError):
            router.subscribe("", Foo)
        assert len(router.routes()) == 1
        assert router.interests() == []


async def test_L2_closing_an_intent_closes_its_links(router: Router) -> None:
    """L2: RemoveIntent dropped the Link without closing it."""
    async with router.subscribe("x", Foo) as sub:
        out = router.publish("x", Foo)
        assert len(sub.intents) == 1
        out.close()
        assert sub.intents == frozenset()


async def test_L3_a_closed_producer_does_not_haunt_the_route(router: Router) -> None:
    """L3: closed children stayed in the FanOutIntent, and every later send reported them."""
    async with router.subscribe("x", Foo) as sub:
        gone = router.publish("x", Foo)
        live = router.publish("x", Foo)
        gone.close()
        assert [info.intents for info in router.routes()] == [1]
        await live.send(Foo(text="ok"))
        assert sub.receive_nowait().text == "ok"
        live.close()


async def test_L6_no_task_per_handle_or_close(router: Router) -> None:
    """L6: one goroutine per OnClose registration per object."""
    counter = SpawnCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        handles = []
        for i in range(200):
            handles.append(router.publish(f"x{i % 10}", Foo))
            handles.append(router.subscribe(f"x{i % 10}", Foo))
        for handle in handles:
            handle.close()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert counter.spawned == 0


async def test_A8_a_failed_declaration_does_not_close_shared_objects(router: Router) -> None:
    """A8: a failed Publish/Subscribe closed the *shared* endpoint objects of other handles."""
    async with router.publish("x", Foo) as out, router.subscribe("x", Foo) as sub:
        with pytest.raises(TypeMismatch):
            router.publish("x", type("Fake", (), {}))  # type: ignore[arg-type]
        with pytest.raises(TypeMismatch):
            router.subscribe("dndm.test.Bar@x", Foo)
        await out.send(Foo(text="alive"))
        assert sub.receive_nowait().text == "alive"


async def test_A9_fan_in_and_fan_out_are_symmetric(router: Router) -> None:
    """A9: FanOut closed itself when emptied but FanIn did not, and FanOut did not dedupe."""
    out = router.publish("x", Foo)
    sub = router.subscribe("x", Foo)
    # Either side alone keeps the route; neither keeps it once both are gone, in either order.
    out.close()
    assert [info.interests for info in router.routes()] == [1]
    sub.close()
    assert router.routes() == []
    sub = router.subscribe("x", Foo)
    out = router.publish("x", Foo)
    sub.close()
    assert [info.intents for info in router.routes()] == [1]
    out.close()
    assert router.routes() == []
    # The same subscriber is linked once, however often the link is formed.
    async with router.subscribe("x", Foo) as once:
        pubs = [router.publish("x", Foo) for _ in range(3)]
        assert len(once.intents) == 3
        await pubs[0].send(Foo())
        assert once.stats.queued == 1
        for pub in pubs:
            pub.close()


def test_A15_routes_are_validated() -> None:
    """A15: NewRoute accepted a nil message (giving "@path"), plain parsing accepted '#', and
    prefixes were not dot-segment aware."""
    with pytest.raises(TypeMismatch):
        PlainRoute.of(None, "x")  # type: ignore[arg-type]
    with pytest.raises(RouteError):
        parse_route("@path")
    with pytest.raises(RouteError):
        parse_route("dndm.test.Foo@pa#th")
    with pytest.raises(RouteError, match="dot-segment prefix"):
        PlainRoute.of(Foo, "robot.sensorsX.temp").hashed(prefix="robot.sensors")
    assert PlainRoute.of(Bar, "a.b") != PlainRoute.of(Foo, "a.b")
