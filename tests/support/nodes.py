"""Helpers for tests that run several nodes in one process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.interest import Interest
from dndm_p2p.node.node import Node

#: Short health-check timings, so that a vanished peer is noticed within a test's patience.
FAST: dict[str, Any] = {"ping_interval": 0.2, "ping_timeout": 2.0}


@asynccontextmanager
async def mesh(count: int, **config: Any) -> AsyncIterator[list[Node]]:
    """``count`` running nodes, each connected to the first."""
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(Node(NodeConfig(name=f"n{i}", **{**FAST, **config})))
            for i in range(count)
        ]
        for node in nodes[1:]:
            with trio.fail_after(10):
                await node.connect(nodes[0].addrs[0])
        yield nodes


async def receive(interest: Interest[Any], count: int, seconds: float = 10) -> list[Any]:
    """Receive exactly ``count`` messages (or fail after ``seconds``)."""
    got: list[Any] = []
    with trio.fail_after(seconds):
        while len(got) < count:
            got.extend(await interest.receive_batch(count - len(got)))
    return got


async def eventually(
    condition: Callable[[], bool], seconds: float = 20, interval: float = 0.05
) -> None:
    """Wait until ``condition()`` holds, checking every ``interval`` (for state kept by code that
    offers no event to wait on, such as py-libp2p's DHT stores); fail after ``seconds``."""
    with trio.fail_after(seconds):
        for _ in range(int(seconds / interval) + 1):
            if condition():
                return
            await trio.sleep(interval)
    raise AssertionError(f"condition still false after {seconds} s")
