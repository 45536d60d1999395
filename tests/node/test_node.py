"""Nodes linking intents and interests over libp2p (several nodes in one process, on 127.0.0.1)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from dndm_p2p import HashedRoute
from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import Unavailable
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Bar, Foo
from tests.support.nodes import FAST, eventually, mesh, receive


async def test_messages_flow_both_ways() -> None:
    async with (
        mesh(2) as (a, b),
        a.publish("a.out", Foo) as a_out,
        b.subscribe("a.out", Foo) as b_in,
        b.publish("b.out", Bar) as b_out,
        a.subscribe("b.out", Bar) as a_in,
    ):
        with trio.fail_after(10):
            (link,) = await a_out.wait_interest()
            await b_out.wait_interest()
        assert link.peer == b.peer_id
        for i in range(100):
            await a_out.send(Foo(text=str(i)))
            await b_out.send(Bar(a=i))
        assert [m.text for m in await receive(b_in, 100)] == [str(i) for i in range(100)]
        assert [m.a for m in await receive(a_in, 100)] == list(range(100))
        assert {info.peer for info in b_in.intents} == {a.peer_id}


async def test_late_subscriber_and_late_publisher_link() -> None:
    async with mesh(2) as (a, b):
        async with a.publish("early.pub", Foo) as early_pub:
            await trio.sleep(0.05)
            async with b.subscribe("early.pub", Foo) as late_sub:
                with trio.fail_after(10):
                    await early_pub.wait_interest()
                await early_pub.send(Foo(text="one"))
                assert [m.text for m in await receive(late_sub, 1)] == ["one"]
        async with b.subscribe("early.sub", Foo) as early_sub:
            await trio.sleep(0.05)
            async with a.publish("early.sub", Foo) as late_pub:
                with trio.fail_after(10):
                    await late_pub.wait_interest()
                await late_pub.send(Foo(text="two"))
                assert [m.text for m in await receive(early_sub, 1)] == ["two"]


async def test_routes_declared_before_connecting_are_exchanged_in_the_hello() -> None:
    """H10: routes declared before the peers met were never propagated."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Node(NodeConfig(name="a", **FAST)))  # type: ignore[arg-type]
        b = await stack.enter_async_context(Node(NodeConfig(name="b", **FAST)))  # type: ignore[arg-type]
        out = stack.enter_context(_closing(a.publish("before", Foo)))
        sub = stack.enter_context(_closing(b.subscribe("before", Foo)))
        await b.connect(a.addrs[0])
        with trio.fail_after(10):
            await out.wait_interest()
        await out.send(Foo(text="hi"))
        assert [m.text for m in await receive(sub, 1)] == ["hi"]


async def test_closing_a_handle_unregisters_it_at_the_peer() -> None:
    async with mesh(2) as (a, b):
        async with a.publish("x", Foo) as out:
            sub = b.subscribe("x", Foo)
            with trio.fail_after(10):
                await out.wait_interest()
            sub.close()
            with trio.fail_after(10):
                await out.wait_links(lambda links: not links)
            sub = b.subscribe("x", Foo)
            with trio.fail_after(10):
                await out.wait_interest()
                await sub.wait_intent()
        with trio.fail_after(10):
            await sub.wait_links(lambda links: not links)
        sub.close()


async def test_pattern_and_hashed_routes_cross_nodes() -> None:
    """H9: hashed routes could not cross a remote endpoint."""
    secret = HashedRoute.of(Foo, "robot.arm.secret", secret=b"key")
    async with (
        mesh(2) as (a, b),
        b.subscribe("robot.**", Foo) as everything,
        b.subscribe(HashedRoute.of(Foo, "robot.arm.secret", secret=b"key"), Foo) as hidden,
        a.publish("robot.arm.temp", Foo) as temp,
        a.publish("robot.leg.temp", Foo) as leg,
        a.publish(secret, Foo) as hashed,
    ):
        with trio.fail_after(10):
            await temp.wait_interest()
            await leg.wait_interest()
            await hashed.wait_interest()
        await temp.send(Foo(text="arm"))
        await leg.send(Foo(text="leg"))
        await hashed.send(Foo(text="secret"))
        assert sorted(m.text for m in await receive(everything, 2)) == ["arm", "leg"]
        assert [m.text for m in await receive(hidden, 1)] == ["secret"]
        # The pattern subscriber never saw the hashed stream.
        await trio.sleep(0.1)
        assert everything.stats.queued == 0


async def test_three_nodes_fan_out_and_fan_in() -> None:
    async with (
        mesh(3) as (hub, left, right),
        left.subscribe("t", Foo) as left_in,
        right.subscribe("t", Foo) as right_in,
        hub.subscribe("t", Foo) as local_in,
        hub.publish("t", Foo) as out,
    ):
        with trio.fail_after(10):
            await out.wait_links(lambda links: len(links) == 3)
        await out.send_many([Foo(text=str(i)) for i in range(50)])
        for sub in (left_in, right_in, local_in):
            assert len(await receive(sub, 50)) == 50
        assert {link.peer for link in out.interests} == {None, left.peer_id, right.peer_id}


async def test_a_node_publishing_and_subscribing_the_same_route_gets_each_message_once() -> None:
    """H5: on one connection a node's own intent and interest linked to each other (loopback
    duplicates) and a second subscriber of the same route was refused."""
    async with (
        mesh(2) as (a, b),
        a.publish("shared", Foo) as a_out,
        a.subscribe("shared", Foo) as a_in,
        b.publish("shared", Foo) as b_out,
        b.subscribe("shared", Foo) as b_in,
    ):
        with trio.fail_after(10):
            await a_out.wait_links(lambda links: len(links) == 2)
            await b_out.wait_links(lambda links: len(links) == 2)
        await a_out.send(Foo(text="from a"))
        await b_out.send(Foo(text="from b"))
        assert sorted(m.text for m in await receive(a_in, 2)) == ["from a", "from b"]
        assert sorted(m.text for m in await receive(b_in, 2)) == ["from a", "from b"]
        await trio.sleep(0.1)
        assert a_in.stats.queued == 0
        assert b_in.stats.queued == 0


async def test_block_policy_holds_the_remote_producer_back_without_loss() -> None:
    async with (
        mesh(2) as (a, b),
        a.publish("slow", Foo) as out,
        b.subscribe("slow", Foo, depth=8, overflow="block") as slow,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        total = 2000

        async def produce() -> None:
            for i in range(total):
                await out.send(Foo(text=str(i)))

        got: list[str] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            with trio.fail_after(30):
                while len(got) < total:
                    got.extend(m.text for m in await slow.receive_batch(3))
        assert got == [str(i) for i in range(total)]
        assert slow.stats.dropped == 0


async def test_a_vanished_peer_unlinks_within_bounded_time() -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Node(NodeConfig(name="a", **FAST)))  # type: ignore[arg-type]
        async with a.publish("x", Foo) as out:
            async with Node(NodeConfig(name="b", **FAST)) as b:  # type: ignore[arg-type]
                await b.connect(a.addrs[0], keep=False)
                b.subscribe("x", Foo)
                with trio.fail_after(10):
                    await out.wait_interest()
            # b is gone: the publisher sees its interest set change.
            with trio.fail_after(10):
                await out.wait_links(lambda links: not links)


async def test_peers_lists_rtt_and_linked_routes() -> None:
    async with mesh(2) as (a, b), a.publish("r", Foo) as out, b.subscribe("r", Foo):
        with trio.fail_after(10):
            await out.wait_interest()
            session = a.session(b.peer_id)
            assert session is not None
            await session.rtt_measured.wait()
        (info,) = a.peers()
        assert info.peer == b.peer_id
        assert info.name == "n1"
        assert info.routes == ("dndm.test.Foo@r",)
        assert 0 <= (info.rtt_us or 0) < 1_000_000


def _closing(handle: object) -> object:
    from contextlib import closing

    return closing(handle)  # type: ignore[type-var]


@pytest.mark.parametrize("count", [1])
async def test_node_closes_cleanly_with_open_handles(count: int) -> None:
    async with mesh(2) as (a, b):
        a.publish("left.open", Foo)
        b.subscribe("left.open", Foo)
    assert a.router.closed
    assert b.router.closed


async def test_reliable_link_resumes_across_a_connection_drop() -> None:
    """10,000 reliable messages across a forced drop arrive exactly once and in order."""
    async with (
        mesh(2, reconnect_initial=0.05) as (a, b), a.publish("reliable", Foo) as out,
        b.subscribe("reliable", Foo, reliable=True, depth=256) as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        total = 10_000

        async def produce() -> None:
            for i in range(total):
                await out.send(Foo(text=str(i)))

        got: list[str] = []
        drops = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            with trio.fail_after(60):
                while len(got) < total:
                    got.extend(m.text for m in await sub.receive_batch())
                    if drops < 2 and len(got) > 3000 * (drops + 1):
                        drops += 1
                        await b.host.disconnect(a.host.get_id())
        assert drops == 2
        assert got == [str(i) for i in range(total)]


async def test_large_batches_are_compressed_when_both_sides_offer_it() -> None:
    async with (
        mesh(2) as (a, b),
        a.publish("bulk", Foo) as out,
        b.subscribe("bulk", Foo, depth=4096, overflow="block") as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        text = "compressible " * 40
        await out.send_many([Foo(text=text)] * 2000)
        got = await receive(sub, 2000)
        assert all(m.text == text for m in got)
        (link,) = a.links()
        assert (link.direction, link.compression, link.messages) == ("out", "zstd", 2000)
        session = a.session(b.peer_id)
        assert session is not None
        (outbound,) = session.outbound
        assert outbound.compressed_batches > 0


async def test_compression_off_when_a_side_does_not_offer_it() -> None:
    async with (
        mesh(2, compression=False) as (a, b),
        a.publish("plain", Foo) as out,
        b.subscribe("plain", Foo) as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        await out.send(Foo(text="x" * 10_000))
        await receive(sub, 1)
        assert {link.compression for link in a.links() + b.links()} == {"none"}


async def test_drops_are_counted_at_both_ends() -> None:
    async with (
        mesh(2) as (a, b),
        a.publish("lossy", Foo) as out,
        b.subscribe("lossy", Foo, depth=16) as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        # Far more than the window at once: the publisher's link queue keeps the newest 16.
        for _ in range(20):
            out.send_nowait(Foo(text="old"))
        await out.send_many([Foo(text=str(i)) for i in range(2000)])
        got = await receive(sub, 16)
        assert [m.text for m in got] == [str(i) for i in range(1984, 2000)]
        # The drop report travels in the same batch as the messages that survived.
        (sent,) = a.links()
        (received,) = b.links()
        assert sent.dropped == 2004
        assert received.dropped == sent.dropped
        assert sub.stats.dropped == 0


async def test_a_subscriber_stalled_past_yamux_patience_keeps_its_stream() -> None:
    """py-libp2p's yamux resets a stream whose reader stalls for 5 s; credit keeps the writer
    from ever waiting on the stream, so a subscriber may stall for as long as it likes."""
    async with (
        mesh(2) as (a, b),
        a.publish("stall", Foo) as out,
        b.subscribe("stall", Foo, depth=64, overflow="block") as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        session = b.session(a.peer_id)
        total = 5000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.send_many, [Foo(text=str(i)) for i in range(total)])
            await trio.sleep(6.0)  # the subscriber reads nothing for longer than yamux allows
            got = await receive(sub, total, seconds=30)
        assert [m.text for m in got] == [str(i) for i in range(total)]
        assert b.session(a.peer_id) is session
        assert a.error_count == 0
        assert b.error_count == 0


async def test_an_event_consumer_that_closed_its_channel_does_not_break_the_node() -> None:
    async with Node(NodeConfig(name="a")) as node, node.events() as events:
        await events.aclose()
        node.report_error(Unavailable("after the consumer closed its channel"))
        assert node.error_count == 1


async def test_idle_sessions_stop_pinging_until_they_carry_a_link() -> None:
    """Sessions a DHT or gossip mesh opens by the hundred cost no traffic while idle; once a
    link runs over one, health checks resume."""
    config = {"ping_interval": 0.05, "ping_timeout": 1.0}
    async with Node(NodeConfig(name="a", **config)) as a, Node(NodeConfig(name="b", **config)) as b:
        await b.connect(a.addrs[0], keep=False)
        session = b.session(a.peer_id)
        assert session is not None
        await eventually(lambda: session.stats.rtt_us is not None)
        idle_pings = session.stats.pings_sent
        await trio.sleep(0.5)  # ten ping intervals with nothing to watch
        assert session.stats.pings_sent <= idle_pings + 1
        async with a.publish("x.y", Foo) as intent, b.subscribe("x.y", Foo):
            await intent.wait_interest()
            await eventually(lambda: session.stats.pings_sent >= idle_pings + 3, seconds=10)


async def test_peers_lists_a_peer_the_peerstore_forgot() -> None:
    """py-libp2p raises PeerStoreError for a peer it has no record of (it evicts peers beyond
    its capacity); this used to crash whole nodes in 100-node simnet runs."""
    async with Node(NodeConfig(name="a")) as a, Node(NodeConfig(name="b")) as b:
        await b.connect(a.addrs[0], keep=False)
        b.host.get_peerstore().clear_peerdata(a.host.get_id())
        assert [(p.peer, p.addrs) for p in b.peers()] == [(a.peer_id, ())]
        assert b.known_routes() == []
