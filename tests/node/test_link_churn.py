"""Closing and reopening links never drops the connection that carries them (issue 11, 5)."""

from __future__ import annotations

import pytest
import trio
from libp2p.abc import INetConn
from libp2p.peer.id import ID

from dndm_p2p.core.interest import Interest
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Foo
from tests.support.nodes import mesh, receive

pytestmark = pytest.mark.slow  # 500 links opened and closed: a few seconds, more when loaded

CYCLES = 500


def connection(node: Node, peer: Node) -> INetConn:
    (conn,) = node.host.get_network().get_connections(ID.from_base58(peer.peer_id))
    return conn


async def test_closing_and_reopening_500_links_keeps_the_connection() -> None:
    """Each cycle opens a link, carries a message, and closes it from one side: the publisher
    (cancelling the subscriber's parked reader) or the subscriber (cancelling its own)."""
    async with mesh(2) as (a, b):
        before = connection(b, a)
        sub: Interest[Foo] = b.subscribe("churn", Foo)
        with trio.fail_after(120):
            for cycle in range(CYCLES):
                out = a.publish("churn", Foo)
                await out.wait_interest()
                await out.send(Foo(text=str(cycle)))
                assert [m.text for m in await receive(sub, 1)] == [str(cycle)]
                if cycle % 2 == 0:
                    out.close()
                    await sub.wait_links(lambda links: not links)
                else:
                    sub.close()
                    await out.wait_links(lambda links: not links)
                    out.close()
                    sub = b.subscribe("churn", Foo)
                assert connection(b, a) is before, f"connection dropped in cycle {cycle}"
                assert connection(a, b).muxed_conn is not None
        sub.close()
        assert not a.errors, list(a.errors)
        assert not b.errors, list(b.errors)
