"""The router's low-level interface (``router.lowlevel``): what a transport attaches and sees."""

from __future__ import annotations

from typing import Any

import pytest

import dndm_p2p.core.router as router_module
from dndm_p2p import Closed, PlainRoute, Router, UnknownRoute
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.queue import DeliveryQueue
from tests.proto.messages_pb2 import Foo

TRANSPORT_NAMES = (
    "attach_remote_sink",
    "detach_sink",
    "attach_source",
    "detach_source",
    "state",
    "add_observer",
    "remove_observer",
    "matching_interests",
)


class RemoteSource:
    """Stands for a peer's intent, as the node's inbound link does."""

    def __init__(self, route: PlainRoute) -> None:
        self.link = LinkInfo(10_000, route, "peer-a")
        self.tracker = LinkTracker()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Intent[Any] | Interest[Any]]] = []

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        self.events.append(("declared", handle))

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        self.events.append(("withdrawn", handle))


def test_the_router_exports_what_applications_use_only() -> None:
    assert router_module.__all__ == ["RouteInfo", "Router"]
    for name in TRANSPORT_NAMES:
        assert not hasattr(Router, name), name
        assert hasattr(Router().lowlevel, name), name


async def test_a_remote_source_feeds_local_subscribers(router: Router) -> None:
    route = PlainRoute.of(Foo, "a.b")
    lowlevel = router.lowlevel
    source = RemoteSource(route)
    async with router.subscribe("a.b", Foo) as sub:
        state = lowlevel.attach_source(route, Foo, source)
        assert lowlevel.state(route) is state
        assert state.local_sinks == (sub.queue,)
        assert {link.peer for link in sub.intents} == {"peer-a"}
        assert not state.has_local_intent
        lowlevel.detach_source(state, source)
        lowlevel.detach_source(state, source)  # idempotent
        assert not sub.intents
    assert lowlevel.state(route) is None, "nothing outlives its owners"


async def test_a_remote_sink_needs_a_local_intent(router: Router) -> None:
    route = PlainRoute.of(Foo, "a.b")
    link = LinkInfo(20_000, route, "peer-b", QoS())
    sink: DeliveryQueue[Foo] = DeliveryQueue(QoS(), link, LinkTracker())
    with pytest.raises(UnknownRoute):
        router.lowlevel.attach_remote_sink(route, sink)
    async with router.publish("a.b", Foo) as out:
        state = router.lowlevel.attach_remote_sink(route, sink)
        assert out.has_interest
        out.send_nowait(Foo(text="x"))
        assert [msg.text for msg in sink.take(8)] == ["x"]
        router.lowlevel.detach_sink(state, sink)
        assert not out.has_interest
    assert router.routes() == []


async def test_observers_hear_declarations_and_withdrawals(router: Router) -> None:
    recorder = Recorder()
    router.lowlevel.add_observer(recorder)
    out = router.publish("a.b", Foo)
    sub = router.subscribe("a.*", Foo)
    assert router.lowlevel.matching_interests(out.route) == [sub]
    sub.close()
    out.close()
    router.lowlevel.remove_observer(recorder)
    router.publish("a.c", Foo).close()
    assert recorder.events == [
        ("declared", out),
        ("declared", sub),
        ("withdrawn", sub),
        ("withdrawn", out),
    ]


async def test_attaching_to_a_closed_router_raises_closed() -> None:
    async with Router() as router:
        pass
    route = PlainRoute.of(Foo, "a.b")
    with pytest.raises(Closed):
        router.lowlevel.attach_source(route, Foo, RemoteSource(route))


async def test_handles_describe_themselves(router: Router) -> None:
    out = router.publish("a.b", Foo)
    sub = router.subscribe("a.*", Foo)
    assert repr(out) == f"<Intent {out.route} #{out.handle_id} 1 linked>"
    assert repr(sub) == f"<Interest {sub.pattern} #{sub.handle_id} 1 linked>"
    out.close()
    sub.close()
    assert repr(out) == f"<Intent {out.route} #{out.handle_id} closed>"
    assert repr(sub) == f"<Interest {sub.pattern} #{sub.handle_id} closed>"
