"""Session adverts expire per their TTL (issue 11, finding 6), against a peer in another process.

The peer (``tests/support/attackers/adverts.py``) advertises intents with TTLs of its choosing;
the node under test subscribes to them, so each advert that is alive is a data link.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import ConfigError
from dndm_p2p.node.node import Node
from dndm_p2p.node.session import PeerSession
from tests.proto.messages_pb2 import Foo
from tests.support.nodes import FAST
from tests.support.processes import Proc, cluster

ATTACKER = [sys.executable, "-m", "tests.support.attackers.adverts"]
ROUTE = "dndm.test.Foo@ttl.route"
WAIT = 30.0


@asynccontextmanager
async def ttl_peer(**config: float) -> AsyncIterator[tuple[Node, Proc, PeerSession]]:
    """The node under test (``config`` applied) and a connected TTL-choosing peer process."""
    async with Node(NodeConfig(name="victim", **{**FAST, **config})) as node, cluster() as group:  # type: ignore[arg-type]
        proc = await group.start("ttl-peer", [*ATTACKER, node.addrs[0]])
        ready = await proc.event("ready")
        session = node.session(ready["peer"])
        assert session is not None
        with trio.fail_after(WAIT):
            await session.hello_received.wait()
        yield node, proc, session
        await proc.send(op="exit")


async def advert(proc: Proc, handle: int, ttl_ms: int, *, register: bool = True) -> None:
    mark = proc.mark()
    await proc.send(op="advert", route=ROUTE, handle=handle, ttl_ms=ttl_ms, register=register)
    await proc.event("sent", since=mark, handle=handle)


async def test_an_advert_that_is_not_refreshed_expires_and_unlinks() -> None:
    async with ttl_peer() as (node, proc, session), node.subscribe("ttl.route", Foo) as sub:
        await advert(proc, 1, ttl_ms=300)
        await proc.event("link_open", route=ROUTE)
        with trio.fail_after(WAIT):
            await sub.wait_links(lambda links: not links)
        await proc.event("link_end", route=ROUTE)
        assert session.remote_intents == {}
        assert session.stats.adverts_expired == 1
        # Expiry is no offence: the peer stays connected.
        assert session.running, (session.error, list(node.errors))


async def test_re_adverts_keep_an_advert_alive_past_its_ttl() -> None:
    async with ttl_peer() as (node, proc, session), node.subscribe("ttl.route", Foo) as sub:
        await advert(proc, 1, ttl_ms=2500)
        await proc.event("link_open", route=ROUTE)
        start = trio.current_time()
        for _ in range(12):  # bounded: about 4 s of refreshes, well past one TTL
            await trio.sleep(0.35)
            await advert(proc, 1, ttl_ms=2500)
            if trio.current_time() - start > 4.0:
                break
        assert trio.current_time() - start > 2.5
        assert len(sub.intents) == 1
        assert session.stats.adverts_expired == 0
        # An unregister still ends it at once, and leaves no deadline behind.
        await advert(proc, 1, ttl_ms=0, register=False)
        with trio.fail_after(WAIT):
            await sub.wait_links(lambda links: not links)
        assert len(session.advert_expiry) == 0


async def test_a_peer_cannot_choose_a_ttl_beyond_the_cap() -> None:
    async with (
        ttl_peer(max_advert_ttl=1.0) as (node, proc, session),
        node.subscribe("ttl.route", Foo) as sub,
    ):
        await advert(proc, 1, ttl_ms=2**64 - 1)
        await proc.event("link_open", route=ROUTE)
        assert session.stats.advert_ttls_capped == 1
        deadline = session.advert_expiry.deadline((True, 1))
        assert deadline is not None
        assert deadline <= trio.current_time() + 1.0
        with trio.fail_after(WAIT):
            await sub.wait_links(lambda links: not links)
        assert session.stats.adverts_expired == 1


async def test_an_advert_without_ttl_has_no_deadline() -> None:
    async with ttl_peer() as (node, proc, session), node.subscribe("ttl.route", Foo) as sub:
        await advert(proc, 1, ttl_ms=0)
        await proc.event("link_open", route=ROUTE)
        assert session.advert_expiry.deadline((True, 1)) is None
        assert len(sub.intents) == 1


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_max_advert_ttl_is_validated(value: float) -> None:
    with pytest.raises(ConfigError, match="max_advert_ttl"):
        NodeConfig(max_advert_ttl=value)
