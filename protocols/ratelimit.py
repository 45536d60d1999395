"""Token buckets, one per key (a peer, an IP, an advertiser), with a bounded number of keys.

:class:`KeyedRateLimit` answers "may ``key`` do one more now?": each key has a bucket of
``burst`` tokens refilled at ``rate`` per second; taking one from an empty bucket is refused
and counted.  At most ``max_keys`` buckets are kept (the least recently used go first, which
at worst forgives a key its debt), so memory stays bounded whatever the number of keys.
Time comes from a clock given at construction (``trio.current_time`` in the node; any
monotonic function in tests).  Importing this module loads no py-libp2p module.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["KeyedRateLimit"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class KeyedRateLimit:
    """Per-key token buckets (see the module docstring).

    :param rate: tokens added per second to each bucket (> 0).
    :param burst: a bucket's capacity, and its content when first used (>= 1).
    :param clock: the current time in seconds, monotonic.
    :param max_keys: the most buckets kept at once (>= 1).
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], *, max_keys: int = 4096
    ) -> None:
        if not rate > 0 or not burst >= 1 or max_keys < 1:
            raise ValueError(f"rate {rate} must be > 0, burst {burst} >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        #: How many requests were refused, in total.
        self.refused = 0

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket: True if it had them, else False (counted)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return True
        self.refused += 1
        return False

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s bucket (it starts full next time)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
