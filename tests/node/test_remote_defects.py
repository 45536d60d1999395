"""Regression tests for the Go original's remote-link defects (section 4 of dndm-original.md).

Each test is named after the defect it guards against.  Defects covered by tests elsewhere are
listed in docs/original-defects.md with the test that covers them.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from dndm_p2p import Closed, ConfigError, Unavailable
from dndm_p2p.config import NodeConfig
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Bar, Foo
from tests.support.nodes import FAST, mesh, receive
from tests.support.trio_checks import live_tasks


async def test_H6_messages_in_flight_after_unsubscribing_do_not_break_the_connection() -> None:
    """H6: a MESSAGE for a route without a local interest was a decode error that closed the
    whole connection.  Here the link of that route closes; the others keep flowing."""
    async with mesh(2) as (a, b), a.publish("one", Foo) as one, a.publish("two", Foo) as two:
        first = b.subscribe("one", Foo, depth=10_000)
        async with b.subscribe("two", Foo, depth=10_000) as second:
            with trio.fail_after(10):
                await one.wait_interest()
                await two.wait_interest()
            session = b.session(a.peer_id)
            await one.send_many([Foo(text="x")] * 2000)
            first.close()  # messages of "one" are still on the wire
            await one.send_many([Foo(text="y")] * 2000)
            await two.send_many([Foo(text=str(i)) for i in range(500)])
            assert [m.text for m in await receive(second, 500)] == [str(i) for i in range(500)]
            assert b.session(a.peer_id) is session, "the connection and session survived"


async def test_H8_quiet_routes_stay_linked() -> None:
    """H8: registrations expired after 60 s without traffic and were never refreshed.  Here a
    route stays linked however long it is quiet, as long as the peer answers pings."""
    async with (
        mesh(2, ping_interval=0.05, ping_timeout=0.4) as (a, b),
        a.publish("quiet", Foo) as out,
        b.subscribe("quiet", Foo) as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        # Let many ping timeouts' worth of time pass without data (time passing is the point).
        await trio.sleep(1.5)
        assert out.has_interest
        await out.send(Foo(text="still here"))
        assert [m.text for m in await receive(sub, 1)] == ["still here"]


async def test_H11_closing_a_node_under_traffic_returns_promptly() -> None:
    """H11: remote Close waited for its own reader goroutine and never returned."""
    async with Node(NodeConfig(name="a", **FAST)) as a, a.publish("busy", Foo) as out:
        stop = trio.Event()

        async def flood() -> None:
            while not stop.is_set():
                await out.send_many([Foo(text="z")] * 100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.fail_after(10):
                async with Node(NodeConfig(name="b", **FAST)) as b:
                    await b.connect(a.addrs[0], keep=False)
                    b.subscribe("busy", Foo, depth=16)
                    await out.wait_interest()
            with trio.fail_after(10):
                await out.wait_links(lambda links: not links)
            stop.set()


async def test_R6_closing_a_remote_subscriber_while_data_flows() -> None:
    """R6: the forwarder read nil from a closed channel and crashed encoding it."""
    async with mesh(2) as (a, b), a.publish("r6", Foo) as out:
        for _ in range(5):
            sub = b.subscribe("r6", Foo, depth=4)
            with trio.fail_after(10):
                await out.wait_interest()
            await out.send_many([Foo(text="a")] * 500)
            sub.close()
            with trio.fail_after(10):
                await out.wait_links(lambda links: not links)
        assert a.error_count == 0
        assert b.error_count == 0


async def test_R11_simultaneous_connects_give_one_session_each() -> None:
    """R11: handshake state was shared between goroutines without synchronization."""
    async with (
        Node(NodeConfig(name="a", **FAST)) as a,
        Node(NodeConfig(name="b", **FAST)) as b,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.connect, b.addrs[0])
            nursery.start_soon(b.connect, a.addrs[0])
        assert [p.peer for p in a.peers()] == [b.peer_id]
        assert [p.peer for p in b.peers()] == [a.peer_id]
        async with a.publish("r11", Bar) as out, b.subscribe("r11", Bar) as sub:
            with trio.fail_after(10):
                await out.wait_interest()
            await out.send(Bar(a=11))
            assert [m.a for m in await receive(sub, 1)] == [11]


async def test_L4_L5_a_session_leaves_no_task_behind() -> None:
    """L4/L5: stream reader/writer goroutines and tickers outlived their connection."""
    async with Node(NodeConfig(name="a", **FAST)) as a, a.publish("l4", Foo) as out:
        before = live_tasks()
        async with Node(NodeConfig(name="b", **FAST)) as b:
            await b.connect(a.addrs[0], keep=False)
            b.subscribe("l4", Foo)
            with trio.fail_after(10):
                await out.wait_interest()
            session = a.session(b.peer_id)
            assert session is not None
        with trio.fail_after(10):
            await out.wait_links(lambda links: not links)
            await session.ended.wait()
        await trio.testing.wait_all_tasks_blocked()
        leftover = {t.name for t in live_tasks() - before}
        assert not any("session" in name.lower() or "ping" in name for name in leftover), leftover


async def test_L7_startup_and_background_errors_reach_the_application() -> None:
    """L7: Serve errors were lost in an errgroup nobody waited on."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"{port}: Address already in use"):
            async with Node(NodeConfig(listen=(f"/ip4/127.0.0.1/tcp/{port}",))):
                pass


async def test_L8_a_node_starts_once() -> None:
    """L8: a second Init started a second reader and leaked the first context."""
    node = Node(NodeConfig(**FAST))
    async with node:
        with pytest.raises(Closed):
            await node.__aenter__()
    with pytest.raises(Closed):
        await node.__aenter__()


async def test_L9_one_reconnection_task_per_peer() -> None:
    """L9: every failed dial started one more retry-timer goroutine."""
    async with Node(NodeConfig(name="a", reconnect_initial=0.01, reconnect_max=0.02, **FAST)) as a:
        async with Node(NodeConfig(name="b", **FAST)) as b:
            b_addr = b.addrs[0]
            await a.connect(b_addr)
        # b is gone and a keeps trying; let many attempts fail.
        for _ in range(20):
            await trio.sleep(0.02)
            reconnecting = [t for t in live_tasks() if t.name.endswith("Reconnector._reconnect")]
            assert len(reconnecting) <= 1, [t.name for t in reconnecting]
        assert b_addr.rsplit("/", 1)[-1] in a._reconnector.pending


async def test_A14_connecting_is_bounded_and_cancellable() -> None:
    """A14: Dial ignored its context: no timeout and no cancellation."""
    with socket.socket() as silent:
        # A TCP listener that accepts and never speaks: the security handshake hangs.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with Node(NodeConfig(handshake_timeout=1.0, **FAST)) as node:
            fake = f"/ip4/127.0.0.1/tcp/{port}/p2p/{node.peer_id}"
            other = "12D3KooWCczQcMbsTQYxttHxtuVpBJo3jZBT6W5aEirBeZE6c1jZ"
            with trio.fail_after(5), pytest.raises(Unavailable):
                await node.connect(fake.replace(node.peer_id, other))
            with trio.move_on_after(0.2) as scope:
                await node.connect(fake.replace(node.peer_id, other))
            assert scope.cancelled_caught


async def test_A16_a_full_subscriber_does_not_stall_the_peers_other_routes() -> None:
    """A16: inbound messages were delivered by the connection's reader, which blocked for up to
    a timeout per message when a consumer was slow: one slow route stalled them all."""
    async with (
        mesh(2) as (a, b),
        a.publish("slow", Foo) as slow_out,
        a.publish("fast", Foo) as fast_out,
        b.subscribe("slow", Foo, depth=4, overflow="block"),
        b.subscribe("fast", Foo, depth=10_000) as fast_in,
    ):
        with trio.fail_after(10):
            await slow_out.wait_interest()
            await fast_out.wait_interest()
        async with trio.open_nursery() as nursery:
            # This producer blocks for good: nobody reads "slow".
            nursery.start_soon(slow_out.send_many, [Foo(text="s")] * 100)
            await fast_out.send_many([Foo(text=str(i)) for i in range(5000)])
            got = await receive(fast_in, 5000)
            assert [m.text for m in got[-3:]] == ["4997", "4998", "4999"]
            nursery.cancel_scope.cancel()
