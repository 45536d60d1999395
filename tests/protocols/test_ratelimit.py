"""KeyedRateLimit: per-key token buckets with a bounded number of keys."""

from __future__ import annotations

import pytest

from protocols.ratelimit import KeyedRateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_the_rate_and_refusals_are_counted() -> None:
    clock = Clock()
    limit = KeyedRateLimit(rate=2.0, burst=3, clock=clock)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.refused == 1
    clock.now = 0.5  # one token back
    assert limit.allow("a")
    assert not limit.allow("a")
    assert limit.allow("b")  # another key has its own bucket


def test_the_number_of_buckets_is_bounded() -> None:
    limit = KeyedRateLimit(rate=1.0, burst=1, clock=Clock(), max_keys=10)
    for key in range(1000):
        limit.allow(key)
    assert len(limit) == 10


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_parameters_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        KeyedRateLimit(rate=rate, burst=burst, clock=Clock())
