"""Request/reply between OS processes on 127.0.0.1, both ways.

The far side is ``tests/support/rpc_peer.py``; this process runs a :class:`~dndm_p2p.Node`
with its own caller and service.  Every wait is bounded and event-driven.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import trio

from dndm_p2p import RemoteError
from dndm_p2p.config import NodeConfig
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Foo
from tests.support.processes import WAIT, cluster

RPC_PEER = [sys.executable, "-m", "tests.support.rpc_peer"]


def words(request: Foo) -> Iterator[Foo]:
    return (Foo(text=word) for word in request.text.split())


async def test_request_reply_across_processes_both_ways() -> None:
    async with (
        cluster() as group,
        Node(NodeConfig(name="here", ping_interval=0.5, ping_timeout=5.0)) as here,
        here.service("here.words", Foo, Foo, words),
    ):
        far = await group.start("far", [*RPC_PEER, "--name", "far"])
        hello = await far.event("listening")
        with trio.fail_after(WAIT):
            await here.connect(hello["addrs"][0])

        # Caller here, service in the other process.
        await far.send(op="serve", id="svc", route="far.upper")
        await far.event("serving", id="svc")
        async with here.caller("far.upper", Foo, Foo) as caller:
            for word in ("one", "two", "three"):
                assert (await caller.call(Foo(text=word), timeout=WAIT)).text == word.upper()
            got = [reply.text async for reply in caller.stream(Foo(text="stream 3"), timeout=WAIT)]
            assert got == ["0", "1", "2"]
            with pytest.raises(RemoteError, match="refused: fail") as caught:
                await caller.call(Foo(text="fail"), timeout=WAIT)
            assert caught.value.kind == "ValueError"

        # Caller in the other process, service here.
        await far.send(op="caller", id="c", route="here.words")
        await far.event("caller_open", id="c")
        mark = far.mark()
        await far.send(op="call", id="c", text="a b c", timeout=WAIT)
        record = await far.event("replies", since=mark, id="c")
        assert record["texts"] == ["a", "b", "c"]
        await far.send(op="exit")
        assert await far.exit_code() == 0
