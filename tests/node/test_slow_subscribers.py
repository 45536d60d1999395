"""The publisher owns its side of a remote link: what a slow remote subscriber gets.

No remote subscriber, whatever QoS it asks for, makes a publisher's ``send()`` wait; the
route's policy drops for it (counted, reported) or evicts it after the deadline; a reliable
link is given up, rather than losing a message or holding producers back, once it would hold
more than its bound; and a reliable link that cannot resume starts afresh.
"""

from __future__ import annotations

import pytest
import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.qos import SlowSubscriberMode
from dndm_p2p.errors import ConfigError, LinkReset, SlowSubscriber
from dndm_p2p.node.node import Node, NodeEvent
from protocols.v1 import common_pb2, control_pb2, data_pb2, result_pb2
from tests.proto.messages_pb2 import Foo
from tests.support.hostile import NODE_OUT, NODE_OUT_ROUTE, hostile_peer
from tests.support.nodes import eventually, mesh, receive

WAIT = 10.0


async def next_event(events: trio.MemoryReceiveChannel[NodeEvent], kind: str) -> NodeEvent:
    """The next event of ``kind`` (bounded)."""
    with trio.fail_after(WAIT):
        async for event in events:
            if event.kind == kind:
                return event
    raise AssertionError(f"no {kind} event")


async def test_a_remote_block_subscriber_that_never_reads_makes_no_send_wait() -> None:
    async with (
        mesh(2, link_queue_depth=64) as (pub, sub),
        pub.publish("never.read", Foo) as out,
        sub.subscribe("never.read", Foo, depth=4, overflow="block"),
    ):
        with trio.fail_after(WAIT):
            await out.wait_interest()
        with trio.fail_after(1.0):  # 5,000 messages against a subscriber that takes none
            for i in range(5000):
                await out.send(Foo(text=str(i)))
        assert pub.slow_subscribers.dropped > 0
        assert pub.slow_subscribers.evicted == 0  # the default policy drops, never evicts


async def test_local_block_interests_still_hold_the_producer_back() -> None:
    async with (
        Node(NodeConfig(name="alone")) as node,
        node.publish("local", Foo) as out,
        node.subscribe("local", Foo, depth=2, overflow="block"),
    ):
        out.send_nowait(Foo(text="1"))
        out.send_nowait(Foo(text="2"))
        with trio.move_on_after(0.2) as waited:
            await out.send(Foo(text="3"))
        assert waited.cancelled_caught


async def test_evict_policy_evicts_a_lagging_subscriber_and_tells_both_sides() -> None:
    async with (
        mesh(2) as (pub, sub),
        pub.events() as pub_events,
        sub.events() as sub_events,
        pub.publish("evict", Foo, slow_subscriber="evict", evict_after=0.3) as out,
        sub.subscribe("evict", Foo, depth=4, overflow="block") as interest,
    ):
        with trio.fail_after(WAIT):
            await out.wait_interest()
        with trio.fail_after(1.0):
            for i in range(2000):
                await out.send(Foo(text=str(i)))
        event = await next_event(pub_events, "subscriber_evicted")
        assert event.peer == sub.peer_id
        assert isinstance(event.error, SlowSubscriber)
        assert pub.slow_subscribers.evicted >= 1
        # The subscriber reads its link again once its consumer takes something: it learns
        # why the link ended.
        assert len(await receive(interest, 4)) == 4
        error = await next_event(sub_events, "error")
        assert isinstance(error.error, SlowSubscriber), error


async def test_a_reliable_subscriber_past_its_bound_is_given_up_then_starts_afresh() -> None:
    async with (
        mesh(2, reliable_link_depth=64) as (pub, sub),
        pub.events() as pub_events,
        sub.events() as sub_events,
        pub.publish("bounded", Foo) as out,
        sub.subscribe("bounded", Foo, depth=8, reliable=True) as interest,
    ):
        with trio.fail_after(WAIT):
            await out.wait_interest()
        for i in range(8):
            await out.send(Foo(text=str(i)))
        await eventually(lambda: interest.stats.queued == 8, seconds=WAIT)
        # The subscriber's consumer takes nothing now: its side grants no credit, and the
        # publisher's reliable link fills to its bound, never making send() wait.
        with trio.fail_after(1.0):
            for i in range(8, 500):
                await out.send(Foo(text=str(i)))
        event = await next_event(pub_events, "subscriber_evicted")
        assert isinstance(event.error, SlowSubscriber)
        assert pub.slow_subscribers.reliable_given_up == 1
        # What was delivered before the give-up is intact, in order; the subscriber learns
        # why its link ended, and the link comes back as a new one (its resume point is gone).
        got = [m.text for m in await receive(interest, 8)]
        assert got == [str(i) for i in range(8)]
        error = await next_event(sub_events, "error")
        assert isinstance(error.error, SlowSubscriber), error
        with trio.fail_after(WAIT):
            await out.wait_links(lambda links: len(links) == 1)
        await out.send(Foo(text="after"))
        with trio.fail_after(WAIT):
            while "after" not in [m.text for m in await interest.receive_batch()]:
                pass


async def test_resuming_a_link_the_publisher_does_not_hold_is_refused_per_spec() -> None:
    async with (
        Node(NodeConfig(name="node")) as node,
        node.publish(NODE_OUT, Foo),
        hostile_peer(node) as hostile,
    ):
        await hostile.handshake()
        stream = await hostile.open("/dndm/data/1.0.0")
        opening = control_pb2.DataFrame(
            open=data_pb2.LinkOpen(
                route=NODE_OUT_ROUTE,
                link_id=7,
                qos=common_pb2.QoS(depth=8, overflow=common_pb2.QoS.BLOCK, reliable=True),
                initial_credit=8,
                resume_after=5,
            )
        )
        (nonce,) = await stream.send(opening)
        with trio.fail_after(WAIT):
            frame = await stream.receive(control_pb2.DataFrame)
        assert frame is not None
        assert frame.result.code == result_pb2.Result.RESUME_REFUSED
        assert (frame.result.link_id, frame.result.nonce) == (7, nonce)
        assert frame.result.transient


def test_slow_subscriber_settings_are_validated() -> None:
    assert NodeConfig().slow_subscriber is SlowSubscriberMode.DROP
    assert NodeConfig(slow_subscriber="evict").slow_subscriber is SlowSubscriberMode.EVICT  # type: ignore[arg-type]
    for bad in (
        {"slow_subscriber": "block"},
        {"slow_subscriber_deadline": 0},
        {"link_queue_depth": 0},
        {"reliable_link_depth": 1 << 21},
    ):
        with pytest.raises(ConfigError):
            NodeConfig(**bad)  # type: ignore[arg-type]


async def test_publish_rejects_a_bad_policy_before_declaring() -> None:
    async with Node(NodeConfig(name="p")) as node:
        with pytest.raises(ConfigError, match="slow_subscriber"):
            node.publish("bad", Foo, slow_subscriber="block")
        with pytest.raises(ConfigError, match="deadline"):
            node.publish("bad", Foo, evict_after=-1)
        assert node.router.lowlevel.intents() == []


def test_the_new_errors_map_to_their_result_codes() -> None:
    from dndm_p2p.node.results import code_for, error_for

    assert code_for(SlowSubscriber("x")) == result_pb2.Result.SLOW_SUBSCRIBER
    assert code_for(LinkReset("x")) == result_pb2.Result.RESUME_REFUSED
    refused = result_pb2.Result(code=result_pb2.Result.RESUME_REFUSED)
    assert isinstance(error_for(refused, "publisher"), LinkReset)


async def test_a_reliable_link_holds_at_most_its_bound_unacked_and_says_when_it_gives_up() -> None:
    async with (
        Node(NodeConfig(name="node", reliable_link_depth=16)) as node,
        node.publish(NODE_OUT, Foo) as out,
        hostile_peer(node) as hostile,
    ):
        await hostile.handshake()
        stream = await hostile.open("/dndm/data/1.0.0")
        # A huge credit and no ack, ever: the publisher still keeps at most 16 unacknowledged.
        await stream.send(
            control_pb2.DataFrame(
                open=data_pb2.LinkOpen(
                    route=NODE_OUT_ROUTE,
                    link_id=3,
                    qos=common_pb2.QoS(depth=8, overflow=common_pb2.QoS.BLOCK, reliable=True),
                    initial_credit=1 << 20,
                )
            )
        )
        with trio.fail_after(WAIT):
            await out.wait_interest()
        frames: list[control_pb2.DataFrame] = []
        with trio.fail_after(WAIT):
            for i in range(16):
                await out.send(Foo(text=str(i)))
            while sum(len(f.batch.messages) for f in frames) < 16:
                frame = await stream.receive(control_pb2.DataFrame)
                assert frame is not None
                frames.append(frame)
        # The window is full of unacknowledged messages: what follows queues, up to the bound,
        # and one more gives the link up, with no send() waiting.
        with trio.fail_after(1.0):
            for i in range(16, 100):
                await out.send(Foo(text=str(i)))
        with trio.fail_after(WAIT):
            frames += await stream.until_end(control_pb2.DataFrame)
        sent = [m for f in frames if f.HasField("batch") for m in f.batch.messages]
        assert len(sent) == 16
        (result,) = [f.result for f in frames if f.HasField("result")]
        assert (result.code, result.link_id) == (result_pb2.Result.SLOW_SUBSCRIBER, 3)
        assert node.slow_subscribers.reliable_given_up == 1
