"""Incarnations: a peer's restart is told apart from its reconnection.

Multi-process scenarios (the scriptable peer ``tests/support/mp_peer.py``, killed with
``kill -9`` and restarted with the same key and port): a reliable link starts cleanly after a
restart of either side, links again within :data:`RELINK_BOUND` seconds of the restarted
process listening, loses nothing that was acknowledged and delivers nothing twice, and the
surviving side reports ``peer_restarted``.  In-process tests check the registry's rules.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.router import Router
from dndm_p2p.node.link_registry import LinkRegistry
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Sample
from tests.support.nodes import mesh, receive
from tests.support.processes import Proc, cluster, linked

#: The issue's bound: the restarted side links within 5 s.
RELINK_BOUND = 5.0
#: Most single-message probes sent while waiting for a new link to carry data.
PROBES = 100


def port_of(addr: str) -> str:
    """The TCP port of a multiaddr."""
    return addr.split("/tcp/")[1].split("/")[0]


async def kill_9(proc: Proc) -> None:
    """SIGKILL the process and wait until it is gone."""
    proc.process.send_signal(signal.SIGKILL)
    assert await proc.exit_code() == -signal.SIGKILL


async def probe_until_received(pub: Proc, sub: Proc, start: int) -> int:
    """Send one message at a time from ``start`` until ``sub`` receives one (a new link
    carries data only once the publisher accepted it); return the next number to send."""
    before = len(sub.values("s"))
    value = start
    for _ in range(PROBES):
        mark = pub.mark()
        await pub.send(op="send", id="p", start=value, count=1)
        await pub.event("sent", since=mark)
        value += 1
        with trio.move_on_after(0.2):
            await sub.wait_values("s", before + 1, seconds=0.2)
            return value
    raise AssertionError(f"no probe reached {sub.name}\n{sub.transcript()}")


async def test_reliable_link_across_kill_9_and_restart_of_the_publisher(tmp_path: Path) -> None:
    key = tmp_path / "pub.key"
    async with cluster() as group:
        pub, hello_pub = await group.peer("pub1", "--key", str(key))
        sub, hello_sub = await group.peer("sub")
        addr = hello_pub["addrs"][0]
        await pub.send(op="publish", id="p", route="r", type="Sample")
        await sub.send(op="connect", addr=addr)  # keep=True: it reconnects by itself
        await sub.event("connected")
        await sub.send(op="subscribe", id="s", route="r", type="Sample", reliable=True, depth=256)
        await pub.wait_for(lambda r: linked(hello_sub["peer"])(r) and r["id"] == "p")
        await pub.send(op="send", id="p", start=1, count=1000)
        assert await sub.wait_values("s", 1000) == list(range(1, 1001))

        mark = sub.mark()
        await kill_9(pub)
        pub2, hello_pub2 = await group.peer(
            "pub2", "--key", str(key), "--listen", f"/ip4/127.0.0.1/tcp/{port_of(addr)}"
        )
        listening = trio.current_time()
        assert hello_pub2["peer"] == hello_pub["peer"]
        await pub2.send(op="publish", id="p", route="r", type="Sample")
        await pub2.wait_for(lambda r: linked(hello_sub["peer"])(r) and r["id"] == "p")
        relinked = trio.current_time() - listening
        print(f"publisher restart: linked {relinked:.2f} s after the new process listened")
        assert relinked < RELINK_BOUND
        restarted = await sub.event("peer_restarted", since=mark, peer=hello_pub["peer"])
        assert "incarnation" in restarted["detail"]

        mark = pub2.mark()
        await pub2.send(op="send", id="p", start=1001, count=1000)
        await pub2.event("sent", since=mark)
        assert await sub.wait_values("s", 2000) == list(range(1, 2001))
        await sub.send(op="exit")
        assert await sub.exit_code() == 0
        assert sub.values("s") == list(range(1, 2001))  # nothing arrived twice


async def test_reliable_link_across_kill_9_and_restart_of_the_subscriber(tmp_path: Path) -> None:
    key = tmp_path / "sub.key"
    async with cluster() as group:
        pub, hello_pub = await group.peer("pub")
        sub, hello_sub = await group.peer("sub1", "--key", str(key))
        addr = hello_pub["addrs"][0]
        await pub.send(op="publish", id="p", route="r", type="Sample")
        await sub.send(op="connect", addr=addr, keep=False)
        await sub.event("connected")
        await sub.send(op="subscribe", id="s", route="r", type="Sample", reliable=True, depth=256)
        await pub.wait_for(lambda r: linked(hello_sub["peer"])(r) and r["id"] == "p")
        await pub.send(op="send", id="p", start=1, count=1000)
        assert await sub.wait_values("s", 1000) == list(range(1, 1001))

        await kill_9(sub)
        # The dead subscriber's parked link holds nobody back: these sends return at once.
        mark = pub.mark()
        with trio.fail_after(2):
            await pub.send(op="send", id="p", start=1001, count=500)
            await pub.event("sent", since=mark)

        sub2, hello_sub2 = await group.peer("sub2", "--key", str(key))
        listening = trio.current_time()
        assert hello_sub2["peer"] == hello_sub["peer"]
        await sub2.send(op="connect", addr=addr, keep=False)
        await sub2.event("connected")
        await sub2.send(op="subscribe", id="s", route="r", type="Sample", reliable=True, depth=256)
        await sub2.wait_for(lambda r: linked(hello_pub["peer"])(r) and r["id"] == "s")
        next_value = await probe_until_received(pub, sub2, 2001)
        relinked = trio.current_time() - listening
        print(f"subscriber restart: data flowing {relinked:.2f} s after the new process listened")
        assert relinked < RELINK_BOUND
        restarted = await pub.event("peer_restarted", since=mark, peer=hello_sub["peer"])
        assert "1 link state" in restarted["detail"]

        mark = pub.mark()
        already = len(sub2.values("s"))
        await pub.send(op="send", id="p", start=next_value, count=1000)
        await pub.event("sent", since=mark)
        got = await sub2.wait_values("s", already + 1000)
        first = got[0]
        # The new process starts afresh: nothing of the old one's link (1 .. 1500) arrives,
        # and from its first message on it gets everything once, in order.
        assert first >= 2001
        assert got == list(range(first, next_value + 1000))
        await sub2.send(op="exit")
        assert await sub2.exit_code() == 0
        assert sub2.values("s") == got


async def test_the_registry_tells_a_restart_from_a_reconnection() -> None:
    async with Router() as router:
        registry = LinkRegistry(router, NodeConfig(remembered_incarnations=2), lambda: False)
        assert registry.incarnation != 0
        assert registry.peer_hello("a", 0) == "new"  # a peer too old to send one
        assert registry.peer_hello("a", 7) == "new"
        assert registry.peer_hello("a", 7) == "reconnected"
        assert registry.peer_hello("a", 8) == "restarted"
        assert registry.peer_hello("b", 1) == "new"
        assert registry.peer_hello("c", 1) == "new"  # the oldest, "a", is forgotten
        assert registry.peer_hello("a", 9) == "new"


async def test_every_node_start_has_its_own_incarnation() -> None:
    async with Node(NodeConfig(name="x")) as first, Node(NodeConfig(name="y")) as second:
        assert first.incarnation != second.incarnation
        await second.connect(first.addrs[0])
        session = first.session(second.peer_id)
        assert session is not None
        with trio.fail_after(10):
            await session.hello_received.wait()
        assert session.remote_incarnation == second.incarnation
        assert session.peer_start == "new"


async def test_a_reconnection_is_reported_as_one_and_keeps_the_reliable_link() -> None:
    async with (
        mesh(2, reconnect_initial=0.05) as (a, b),
        b.events() as events,
        a.publish("resume", Sample) as out,
        b.subscribe("resume", Sample, reliable=True) as sub,
    ):
        with trio.fail_after(10):
            await out.wait_interest()
        await out.send(Sample(seq=1))
        assert [m.seq for m in await receive(sub, 1)] == [1]
        await b.host.disconnect(a.host.get_id())
        with trio.fail_after(10):
            async for event in events:
                if event.kind == "peer_reconnected":
                    assert event.peer == a.peer_id
                    break
                assert event.kind != "peer_restarted"
            await out.wait_interest()
        await out.send(Sample(seq=2))
        assert [m.seq for m in await receive(sub, 1)] == [2]
