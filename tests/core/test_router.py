"""The in-process router: linking, delivery, QoS, callbacks and closing, as a user sees them."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.lowlevel
import trio.testing

from dndm_p2p import (
    CallbackError,
    Closed,
    ConfigError,
    HashedRoute,
    LinkEventKind,
    NoInterest,
    QoS,
    RouteError,
    Router,
    TypeMismatch,
    WouldBlock,
)
from tests.proto.messages_pb2 import Bar, Foo
from tests.support.trio_checks import SpawnCounter


async def test_publish_then_subscribe_links_and_delivers(router: Router) -> None:
    async with router.publish("robot.arm.temp", Foo) as out:
        assert not out.has_interest
        async with router.subscribe("robot.arm.temp", Foo) as sub:
            assert out.has_interest
            assert [link.handle_id for link in out.interests] == [sub.handle_id]
            assert [link.handle_id for link in sub.intents] == [out.handle_id]
            await out.send(Foo(text="hello"))
            assert (await sub.receive()).text == "hello"


async def test_route_forms_are_equivalent(router: Router) -> None:
    """A dotted path, the route string and a Route object all name the same route."""
    async with (
        router.publish("a.b", Foo) as by_path,
        router.subscribe("dndm.test.Foo@a.b", Foo) as by_string,
    ):
        assert by_path.route == by_string.route
        assert by_path.has_interest


async def test_route_string_with_wrong_type_is_rejected(router: Router) -> None:
    with pytest.raises(TypeMismatch, match=r"dndm\.test\.Bar"):
        router.publish("dndm.test.Bar@a.b", Foo)
    with pytest.raises(RouteError, match="empty segment"):
        router.subscribe("a..b", Foo)


async def test_hashed_routes_link_only_with_the_same_hash(router: Router) -> None:
    secret_route = HashedRoute.of(Foo, "robot.arm.temp", secret=b"k1")
    async with (
        router.publish(secret_route, Foo) as out,
        router.subscribe(HashedRoute.of(Foo, "robot.arm.temp", secret=b"k1"), Foo) as right,
        router.subscribe(HashedRoute.of(Foo, "robot.arm.temp", secret=b"k2"), Foo) as wrong,
        router.subscribe("robot.arm.temp", Foo) as plain,
        router.subscribe("robot.**", Foo) as pattern,
    ):
        assert {link.handle_id for link in out.interests} == {right.handle_id}
        await out.send(Foo(text="secret"))
        assert right.receive_nowait().text == "secret"
        for other in (wrong, plain, pattern):
            with pytest.raises(WouldBlock):
                other.receive_nowait()
        # The parsed string form (what a peer would send) links with the same route.
        async with router.subscribe(str(secret_route), Foo) as parsed:
            assert parsed.handle_id in {link.handle_id for link in out.interests}


async def test_wait_interest_waits_for_a_subscriber(router: Router) -> None:
    async with router.publish("x", Foo) as out:
        linked: list[int] = []

        async def producer() -> None:
            links = await out.wait_interest()
            linked.extend(link.handle_id for link in links)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await trio.testing.wait_all_tasks_blocked()
            assert linked == []
            async with router.subscribe("x", Foo) as sub:
                await trio.testing.wait_all_tasks_blocked()
                assert linked == [sub.handle_id]


async def test_wait_interest_raises_closed_when_the_intent_closes(router: Router) -> None:
    out = router.publish("x", Foo)

    async def closer() -> None:
        await trio.testing.wait_all_tasks_blocked()
        out.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(closer)
        with pytest.raises(Closed):
            await out.wait_interest()


async def test_link_events_follow_the_linked_set(router: Router) -> None:
    async with router.publish("x", Foo) as out:
        first = router.subscribe("x", Foo)
        events = out.links()
        event = await events.__anext__()
        assert (event.kind, event.link.handle_id) == (LinkEventKind.LINKED, first.handle_id)
        second = router.subscribe("x", Foo)
        first.close()
        seen = {((await events.__anext__()).kind, h) for h in range(2)}
        kinds = {kind for kind, _ in seen}
        assert kinds == {LinkEventKind.LINKED, LinkEventKind.UNLINKED}
        assert {link.handle_id for link in out.interests} == {second.handle_id}
        second.close()
        assert (await events.__anext__()).kind is LinkEventKind.UNLINKED
    # The intent closed: the iterator ends instead of hanging.
    with pytest.raises(StopAsyncIteration):
        await events.__anext__()


async def test_send_checks_the_message_type(router: Router) -> None:
    async with router.publish("x", Foo) as out, router.subscribe("x", Foo) as sub:
        with pytest.raises(TypeMismatch, match="carries Foo, not Bar"):
            await out.send(Bar(a=1))  # type: ignore[arg-type]
        with pytest.raises(TypeMismatch):
            out.send_nowait(Bar())  # type: ignore[arg-type]
        with pytest.raises(TypeMismatch):
            await out.send_many([Foo(), Bar()])  # type: ignore[list-item]
        assert sub.stats.queued == 0, "a rejected batch must deliver nothing"


async def test_no_interest_is_dropped_or_raised_as_chosen(router: Router) -> None:
    async with (
        router.publish("x", Foo) as quiet,
        router.publish("y", Foo, no_interest="raise") as loud,
    ):
        await quiet.send(Foo())
        await quiet.send_many([Foo(), Foo()])
        assert quiet.stats.unrouted == 3
        with pytest.raises(NoInterest):
            await loud.send(Foo())
        with pytest.raises(NoInterest):
            loud.send_nowait(Foo())
        assert NoInterest.transient
    with pytest.raises(ConfigError):
        router.publish("z", Foo, no_interest="shout")  # type: ignore[arg-type]


async def test_receive_forms(router: Router) -> None:
    async with router.publish("x", Foo) as out, router.subscribe("x", Foo) as sub:
        with pytest.raises(WouldBlock):
            sub.receive_nowait()
        await out.send_many([Foo(text=str(i)) for i in range(10)])
        assert sub.receive_nowait().text == "0"
        assert [m.text for m in await sub.receive_batch(3)] == ["1", "2", "3"]
        assert [m.text for m in await sub.receive_batch()] == [str(i) for i in range(4, 10)]
        with pytest.raises(ConfigError, match="max_n"):
            await sub.receive_batch(0)
        assert sub.stats.received == 10


async def test_iteration_ends_when_the_interest_closes(router: Router) -> None:
    got: list[str] = []
    async with router.publish("x", Foo) as out:
        sub = router.subscribe("x", Foo)

        async def consume() -> None:
            async for msg in sub:
                got.append(msg.text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            for i in range(3):
                await out.send(Foo(text=str(i)))
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
    assert got == ["0", "1", "2"]
    with pytest.raises(Closed):
        await sub.receive()


async def test_fan_out_delivers_the_same_object_to_every_subscriber(router: Router) -> None:
    async with router.publish("x", Foo) as out:
        subs = [router.subscribe("x", Foo) for _ in range(3)]
        msgs = [Foo(text=str(i)) for i in range(50)]
        for msg in msgs:
            await out.send(msg)
        for sub in subs:
            received = await sub.receive_batch(100)
            assert len(received) == 50
            assert all(a is b for a, b in zip(received, msgs, strict=True)), "zero copy"
            sub.close()


async def test_fan_in_reaches_every_subscriber(router: Router) -> None:
    async with router.subscribe("x", Foo) as a, router.subscribe("x", Foo) as b:
        pubs = [router.publish("x", Foo) for _ in range(3)]
        for i, pub in enumerate(pubs):
            await pub.send(Foo(text=f"p{i}"))
        for sub in (a, b):
            assert sorted(m.text for m in await sub.receive_batch()) == ["p0", "p1", "p2"]
            assert len(sub.intents) == 3
        for pub in pubs:
            pub.close()


async def test_two_types_on_one_path_are_isolated(router: Router) -> None:
    async with (
        router.publish("x", Foo) as foo_out,
        router.publish("x", Bar) as bar_out,
        router.subscribe("x", Foo) as foo_in,
        router.subscribe("x", Bar) as bar_in,
    ):
        assert {link.handle_id for link in foo_out.interests} == {foo_in.handle_id}
        await foo_out.send(Foo(text="f"))
        await bar_out.send(Bar(a=7))
        assert [m.text for m in await foo_in.receive_batch()] == ["f"]
        assert [m.a for m in await bar_in.receive_batch()] == [7]


async def test_pattern_interest_links_earlier_and_later_routes(router: Router) -> None:
    early = router.publish("robot.arm.temp", Foo)
    async with (
        router.subscribe("robot.*.temp", Foo) as temps,
        router.subscribe("robot.**", Foo) as everything,
    ):
        late = router.publish("robot.leg.temp", Foo)
        other = router.publish("robot.leg.speed", Foo)
        elsewhere = router.publish("house.temp", Foo)
        wrong_type = router.publish("robot.arm.temp", Bar)
        for pub, text in ((early, "arm"), (late, "leg"), (other, "speed"), (elsewhere, "house")):
            await pub.send(Foo(text=text))
        await wrong_type.send(Bar())
        assert [m.text for m in await temps.receive_batch()] == ["arm", "leg"]
        assert [m.text for m in await everything.receive_batch()] == ["arm", "leg", "speed"]
        assert len(temps.intents) == 2
        for pub in (early, late, other, elsewhere, wrong_type):
            pub.close()
        assert temps.intents == frozenset()


async def test_pattern_with_type_prefix(router: Router) -> None:
    async with (
        router.subscribe("dndm.test.Foo@a.*", Foo) as sub,
        router.publish("a.b", Foo) as out,
    ):
        assert out.has_interest
        assert sub.intents
    with pytest.raises(TypeMismatch):
        router.subscribe("dndm.test.Bar@a.*", Foo)


async def test_drop_oldest_keeps_the_latest(router: Router) -> None:
    async with router.publish("x", Foo) as out, router.subscribe("x", Foo, depth=4) as sub:
        for i in range(10):
            out.send_nowait(Foo(text=str(i)))
        await out.send_many([Foo(text=str(i)) for i in range(10, 12)])
        assert [m.text for m in await sub.receive_batch()] == ["8", "9", "10", "11"]
        assert sub.stats.dropped == 8
        assert sub.dropped == 8


async def test_drop_newest_keeps_the_first(router: Router) -> None:
    qos = QoS(depth=4, overflow="drop_newest")  # type: ignore[arg-type]
    async with router.publish("x", Foo) as out, router.subscribe("x", Foo, qos=qos) as sub:
        await out.send_many([Foo(text=str(i)) for i in range(6)])
        out.send_nowait(Foo(text="late"))
        assert [m.text for m in await sub.receive_batch()] == ["0", "1", "2", "3"]
        assert sub.stats.dropped == 3


async def test_block_makes_the_producer_wait_and_loses_nothing(router: Router) -> None:
    async with (
        router.publish("x", Foo) as out,
        router.subscribe("x", Foo, depth=2, overflow="block") as slow,
        router.subscribe("x", Foo, depth=1) as lossy,
    ):
        sent = 0

        async def produce() -> None:
            nonlocal sent
            for i in range(5):
                await out.send(Foo(text=str(i)))
                sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == 2, "the producer must wait while the block subscriber is full"
            with pytest.raises(WouldBlock):
                out.send_nowait(Foo(text="nowait"))
            assert lossy.receive_nowait().text == "1", "a refused send reaches nobody"
            got = []
            while len(got) < 5:
                got.extend(m.text for m in await slow.receive_batch())
        assert got == ["0", "1", "2", "3", "4"]
        assert slow.stats.dropped == 0


async def test_send_many_with_block_delivers_in_chunks(router: Router) -> None:
    async with (
        router.publish("x", Foo) as out,
        router.subscribe("x", Foo, depth=3, overflow="block") as sub,
    ):
        got: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.send_many, [Foo(text=str(i)) for i in range(10)])
            while len(got) < 10:
                batch = await sub.receive_batch()
                assert len(batch) <= 3
                got.extend(m.text for m in batch)
        assert got == [str(i) for i in range(10)]


async def test_closing_a_block_subscriber_releases_the_producer(router: Router) -> None:
    async with router.publish("x", Foo) as out:
        sub = router.subscribe("x", Foo, depth=1, overflow="block")
        await out.send(Foo())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.send, Foo())
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
        assert out.stats.unrouted == 1


async def test_cancelled_send_delivers_nothing(router: Router) -> None:
    async with (
        router.publish("x", Foo) as out,
        router.subscribe("x", Foo, depth=1, overflow="block") as sub,
    ):
        await out.send(Foo(text="first"))
        with trio.move_on_after(0.01) as scope:
            await out.send(Foo(text="second"))
        assert scope.cancelled_caught
        assert [m.text for m in await sub.receive_batch()] == ["first"]


async def test_callback_mode(router: Router) -> None:
    got: list[str] = []
    done = trio.Event()

    def on_message(msg: Foo) -> None:
        got.append(msg.text)
        if len(got) == 3:
            done.set()

    async with router.publish("x", Foo) as out, router.subscribe("x", Foo, callback=on_message):
        await out.send_many([Foo(text="a"), Foo(text="b"), Foo(text="c")])
        with trio.fail_after(5):
            await done.wait()
    assert got == ["a", "b", "c"]


async def test_async_callback_mode(router: Router) -> None:
    got: list[str] = []

    async def on_message(msg: Foo) -> None:
        await trio.lowlevel.checkpoint()
        got.append(msg.text)

    async with router.publish("x", Foo) as out, router.subscribe("x", Foo, callback=on_message):
        await out.send(Foo(text="a"))
        await trio.testing.wait_all_tasks_blocked()
    assert got == ["a"]


async def test_callback_error_reaches_the_application(router: Router) -> None:
    def broken(msg: Foo) -> None:
        raise RuntimeError("boom")

    async def use_failing_subscriber() -> None:
        async with router.subscribe("x", Foo, callback=broken) as sub:
            await out.send(Foo())
            await trio.testing.wait_all_tasks_blocked()
            assert sub.closed, "a failed callback closes its interest"
            assert not out.has_interest

    async with router.publish("x", Foo) as out:
        with pytest.raises(CallbackError, match="boom") as caught:
            await use_failing_subscriber()
        assert isinstance(caught.value.__cause__, RuntimeError)


async def test_closed_handles_raise_closed(router: Router) -> None:
    out = router.publish("x", Foo)
    sub = router.subscribe("x", Foo)
    out.close()
    sub.close()
    out.close()  # idempotent
    with pytest.raises(Closed):
        await out.send(Foo())
    with pytest.raises(Closed):
        out.send_nowait(Foo())
    with pytest.raises(Closed):
        await out.send_many([Foo()])
    with pytest.raises(Closed):
        await sub.receive()
    with pytest.raises(Closed):
        sub.receive_nowait()
    with pytest.raises(Closed):
        await sub.receive_batch()
    with pytest.raises(Closed):
        async with out:
            pass


async def test_closing_the_router_closes_everything() -> None:
    async with Router() as router:
        out = router.publish("x", Foo)
        sub = router.subscribe("x", Foo)
        cb = router.subscribe("y", Foo, callback=lambda msg: None)
        router.close()
        assert out.closed
        assert sub.closed
        assert cb.closed
        assert router.routes() == []
        with pytest.raises(Closed):
            router.publish("x", Foo)
        with pytest.raises(Closed):
            await out.send(Foo())


async def test_router_must_be_open() -> None:
    with pytest.raises(Closed, match="not open"):
        Router().publish("x", Foo)


async def test_no_task_per_message(router: Router) -> None:
    counter = SpawnCounter()
    async with (
        router.publish("x", Foo) as out,
        router.subscribe("x", Foo, depth=10_000) as a,
        router.subscribe("x", Foo, depth=10_000) as b,
    ):
        trio.lowlevel.add_instrument(counter)
        try:
            for i in range(1000):
                await out.send(Foo(text=str(i)))
                out.send_nowait(Foo())
            await out.send_many([Foo()] * 1000)
            await a.receive_batch(10_000)
            await b.receive_batch(10_000)
        finally:
            trio.lowlevel.remove_instrument(counter)
    assert counter.spawned == 0


async def test_closed_handles_leave_nothing_behind(router: Router) -> None:
    out = router.publish("x", Foo)
    sub = router.subscribe("x", Foo)
    pattern = router.subscribe("**", Foo)
    await out.send_many([Foo()] * 100)
    queue_ref = weakref.ref(sub.queue)
    pattern_ref = weakref.ref(pattern.queue)
    for handle in (out, sub, pattern):
        handle.close()
    assert router.routes() == []
    assert router.interests() == []
    del sub, pattern, handle
    gc.collect()
    assert queue_ref() is None, "a buffer outlived its interest"
    assert pattern_ref() is None, "a buffer outlived its pattern interest"


async def test_routes_snapshot(router: Router) -> None:
    async with router.publish("x", Foo), router.subscribe("x", Foo), router.subscribe("x.**", Foo):
        (info,) = router.routes()
        assert (str(info.route), info.intents, info.interests) == ("dndm.test.Foo@x", 1, 2)


async def test_a_busy_producer_lets_other_tasks_run(router: Router) -> None:
    """send() skips most schedule points for speed, but never starves the rest of the program."""
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with router.publish("x", Foo) as out, router.subscribe("x", Foo, depth=16) as sub:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            for _ in range(1000):
                await out.send(Foo())
            stop = True
        assert ticks >= 1000 // 64 - 1
        assert sub.stats.dropped == 1000 - 16
