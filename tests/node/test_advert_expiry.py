"""AdvertExpiry: TTL deadlines of a peer's session adverts (virtual time)."""

from __future__ import annotations

from collections.abc import Hashable

import trio
import trio.testing

from dndm_p2p.node.advert_expiry import AdvertExpiry


async def test_adverts_expire_in_deadline_order_and_refreshes_postpone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    expired: list[tuple[float, Hashable]] = []

    def record(keys: list[Hashable]) -> None:
        expired.extend((round(trio.current_time()), key) for key in keys)

    expiry = AdvertExpiry(60.0, record)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(expiry.run)
        expiry.refresh("a", 5_000)
        expiry.refresh("b", 2_000)
        expiry.refresh("c", 0)  # no TTL: never expires
        await trio.sleep(1)
        expiry.refresh("b", 10_000)  # refreshed at t=1: now due at 11
        expiry.refresh("d", 3_000)
        expiry.forget("a")  # unregistered
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert expired == [(4, "d"), (11, "b")]
    assert len(expiry) == 0


async def test_a_ttl_longer_than_the_cap_is_cut(autojump_clock: trio.testing.MockClock) -> None:
    expired: list[float] = []
    expiry = AdvertExpiry(2.0, lambda keys: expired.append(trio.current_time()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(expiry.run)
        expiry.refresh("forever", 2**64 - 1)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert expired == [2.0]
    assert expiry.capped == 1


def test_memory_stays_proportional_to_live_adverts_however_often_they_are_refreshed() -> None:
    async def main() -> None:
        expiry = AdvertExpiry(60.0, lambda keys: None)
        for _ in range(10_000):
            expiry.refresh("same", 30_000)
        assert len(expiry) == 1
        assert len(expiry._heap) <= 2 * len(expiry) + 65

    trio.run(main)
