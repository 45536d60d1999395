"""The resource manager: reservations per peer and per node, refusals, strikes, the snapshot."""

from __future__ import annotations

import pytest
import trio

from dndm_p2p.config import NodeConfig, ResourceLimits
from dndm_p2p.errors import ConfigError, ResourceLimitExceeded, TransientError
from dndm_p2p.node.resources import ResourceManager
from protocols.v1 import result_pb2
from tests.proto.messages_pb2 import Foo
from tests.support.nodes import eventually, mesh, receive

KIB = 1024
MIB = 1024 * KIB


def manager(**limits: int | float) -> tuple[ResourceManager, list[tuple[str, str]]]:
    dropped: list[tuple[str, str]] = []
    now = [0.0]
    mgr = ResourceManager(
        ResourceLimits(**limits),  # type: ignore[arg-type]
        drop_peer=lambda peer, error: dropped.append((peer, str(error.use))),
        clock=lambda: now[0],
    )
    mgr._test_now = now  # type: ignore[attr-defined]
    return mgr, dropped


def test_a_reservation_past_the_peers_limit_is_refused_with_the_facts() -> None:
    mgr, _ = manager(peer_memory=64 * KIB, node_memory=128 * KIB)
    mgr.reserve("a", "memory", 60 * KIB, "unacked")
    with pytest.raises(ResourceLimitExceeded) as caught:
        mgr.reserve("a", "memory", 5 * KIB, "unacked")
    error = caught.value
    assert (error.peer, error.resource, error.use) == ("a", "memory", "unacked")
    assert error.scope == "peer"
    assert (error.size, error.limit) == (5 * KIB, 64 * KIB)
    assert isinstance(error, TransientError)
    assert isinstance(error, OSError)
    assert not isinstance(error, MemoryError)
    assert mgr.used("a", "memory") == 60 * KIB  # nothing reserved by the refusal
    assert mgr.snapshot().refusals == {"memory/unacked": 1}


def test_the_node_scope_bounds_all_peers_together() -> None:
    mgr, _ = manager(peer_streams=3, node_streams=4)
    mgr.reserve("a", "streams", 3)
    mgr.reserve("b", "streams", 1)
    with pytest.raises(ResourceLimitExceeded) as caught:
        mgr.reserve("c", "streams", 1, "streams")
    assert caught.value.scope == "node"
    mgr.release("a", "streams", 1)
    mgr.reserve("c", "streams", 1, "streams")
    assert mgr.snapshot().node["streams"] == 4


def test_release_forgets_a_peer_that_holds_nothing() -> None:
    mgr, _ = manager()
    with mgr.reserved("a", "links", 1, "links"):
        assert mgr.snapshot().peers == {
            "a": {"memory": 0, "streams": 0, "links": 1, "queue_slots": 0}
        }
    assert mgr.snapshot().peers == {}
    mgr.release("nobody", "memory", 10)  # harmless
    mgr.release("a", "memory", 10)
    assert mgr.snapshot().node["memory"] == 0


def test_a_peer_refused_too_often_within_the_window_is_dropped_once() -> None:
    mgr, dropped = manager(peer_links=1, refusals_to_drop=3, refusal_window=10.0)
    now = mgr._test_now  # type: ignore[attr-defined]
    mgr.reserve("a", "links", 1)
    for second in (0.0, 20.0, 21.0):  # the first refusal falls out of the window
        now[0] = second
        with pytest.raises(ResourceLimitExceeded):
            mgr.reserve("a", "links", 1, "links")
    assert dropped == []
    now[0] = 22.0
    with pytest.raises(ResourceLimitExceeded):
        mgr.reserve("a", "links", 1, "links")
    assert dropped == [("a", "links")]
    assert mgr.snapshot().dropped_peers == 1


def test_refusals_counted_by_their_caller_strike_too() -> None:
    mgr, dropped = manager(refusals_to_drop=2)
    for _ in range(2):
        mgr.count_refusal(
            ResourceLimitExceeded("x", resource="memory", use="ping_payload", peer="a")
        )
    assert dropped == [("a", "ping_payload")]
    assert mgr.snapshot().refusals == {"memory/ping_payload": 2}


def test_depths_are_clamped_and_counted() -> None:
    mgr, _ = manager(link_depth=1024, peer_queue_slots=4096)
    assert mgr.clamp_depth(1 << 20) == 1024
    assert mgr.clamp_depth(100) == 100
    assert mgr.snapshot().clamped == 1


def test_available_is_the_smaller_room_of_both_scopes() -> None:
    mgr, _ = manager(peer_memory=100 * KIB, node_memory=150 * KIB)
    mgr.reserve("b", "memory", 100 * KIB)
    assert mgr.available("a", "memory") == 50 * KIB
    assert mgr.available("b", "memory") == 0


def test_limits_are_validated_and_nested_in_the_node_config() -> None:
    assert NodeConfig().limits == ResourceLimits()
    assert NodeConfig(limits=ResourceLimits(peer_memory=8 * MIB)).limits.peer_memory == 8 * MIB
    with pytest.raises(ConfigError, match=r"ResourceLimits\.peer_memory"):
        ResourceLimits(peer_memory=32 * MIB, node_memory=16 * MIB)
    with pytest.raises(ConfigError, match=r"ResourceLimits\.refusals_to_drop"):
        ResourceLimits(refusals_to_drop=0)
    with pytest.raises(ConfigError, match=r"ResourceLimits\.refusal_window"):
        ResourceLimits(refusal_window=-1)
    with pytest.raises(ConfigError, match=r"ResourceLimits\.subscriber_frame_size"):
        ResourceLimits(subscriber_frame_size=10)
    with pytest.raises(ConfigError, match=r"NodeConfig\.limits"):
        NodeConfig(limits={"peer_memory": 1})  # type: ignore[arg-type]


def test_a_refusal_travels_as_its_own_result_code() -> None:
    from dndm_p2p.node.results import code_for, error_for

    error = ResourceLimitExceeded("full", resource="memory", peer="a")
    assert code_for(error) == result_pb2.Result.RESOURCE_LIMIT_EXCEEDED
    back = error_for(result_pb2.Result(code=result_pb2.Result.RESOURCE_LIMIT_EXCEEDED), "peer")
    assert isinstance(back, ResourceLimitExceeded)


# -- a node's links reserve and release -------------------------------------------------------


async def test_a_reliable_links_reservations_come_back_once_acknowledged_and_gone() -> None:
    async with mesh(2) as (publisher, subscriber):
        peer = subscriber.peer_id
        resources = publisher.resource_manager
        async with publisher.publish("held", Foo) as out:
            async with subscriber.subscribe("held", Foo, reliable=True, depth=64) as inbox:
                with trio.fail_after(10):
                    await out.wait_interest()
                assert resources.used(peer, "links") == 1
                assert resources.used(peer, "queue_slots") == 64
                await out.send_many([Foo(text=str(i)) for i in range(50)])  # within the window
                await receive(inbox, 50)
                # Everything delivered is acknowledged: nothing is held for it any more.
                await eventually(lambda: resources.snapshot().memory_by_use.get("unacked", 0) == 0)
            await eventually(lambda: resources.used(peer, "links") == 0)
        assert resources.used(peer, "queue_slots") == 0


async def test_unacknowledged_messages_expire_while_the_stream_runs() -> None:
    """The TTL holds on a live stream too: what a subscriber never acknowledges is let go."""
    async with (
        mesh(2, message_ttl=0.2) as (publisher, subscriber),
        publisher.publish("ttl", Foo) as out,
        subscriber.subscribe("ttl", Foo, reliable=True, depth=64) as inbox,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        session = publisher.session(subscriber.peer_id)
        assert session is not None
        (link,) = session.outbound
        await out.send(Foo(text="first"))
        await receive(inbox, 1)
        await eventually(lambda: link.acked == link.next_sequence - 1)
        # Pretend the first message is still unacknowledged, from long ago: the writer lets it
        # go before it writes the next batch (whose ack would come after).
        link.unacked.append((link.next_sequence - 1, b"x" * 100, 0.0))
        link.unacked_bytes += 100
        expired = link.expired
        await out.send(Foo(text="second"))
        await receive(inbox, 1)
        await eventually(lambda: link.expired > expired)
        assert link.unacked_bytes >= 0
