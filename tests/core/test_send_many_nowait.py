"""Intent.send_many_nowait: a whole batch to every subscriber at once, or to none."""

from __future__ import annotations

import pytest

from dndm_p2p import NoInterest, Router, TypeMismatch, WouldBlock
from tests.proto.messages_pb2 import Bar, Sample


async def test_a_batch_reaches_every_subscriber_or_none(router: Router) -> None:
    async with (
        router.subscribe("b", Sample, depth=4, overflow="block") as small,
        router.subscribe("b", Sample, depth=64) as large,
        router.publish("b", Sample) as out,
    ):
        out.send_many_nowait([Sample(seq=i) for i in range(3)])
        with pytest.raises(WouldBlock):
            out.send_many_nowait([Sample(seq=i) for i in range(3, 5)])
        assert [m.seq for m in await small.receive_batch()] == [0, 1, 2]
        assert [m.seq for m in await large.receive_batch()] == [0, 1, 2]
        with pytest.raises(TypeMismatch):
            out.send_many_nowait([Sample(seq=9), Bar(a=1)])  # type: ignore[list-item]
        assert out.stats.sent == 3


async def test_nobody_listening_is_counted_or_raised(router: Router) -> None:
    async with router.publish("n", Sample) as dropping:
        dropping.send_many_nowait([Sample(seq=1), Sample(seq=2)])
        assert dropping.stats.unrouted == 2
    async with router.publish("n", Sample, no_interest="raise") as raising:
        with pytest.raises(NoInterest):
            raising.send_many_nowait([Sample(seq=1)])
