"""The scenario's latency model as a :data:`~simnet.net.LatencyFn`: :class:`LatencyModel`.

A :class:`~simnet.scenario.LatencySpec` names the model (``constant``, ``uniform`` per pair,
or ``regions`` with a matrix and jitter); the model turns it into one-way seconds from one
address to another.  The random part of a pair's latency comes from a hash of the unordered
pair and the seed (so it is the same in every run with that seed) and is cached; the result is
multiplied by the spike ``factor`` that ``latency_spike`` events set.
"""

from __future__ import annotations

import zlib

from simnet.scenario import LatencySpec

__all__ = ["LatencyModel"]


class LatencyModel:
    """The scenario's latency as a :data:`~simnet.net.LatencyFn`, with a spike ``factor``.

    Per-pair values are drawn once from a hash of the pair and the seed, and cached.
    """

    def __init__(self, spec: LatencySpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        self.factor = 1.0
        self.region_of: dict[str, int] = {}
        self._cache: dict[tuple[str, str], float] = {}

    def _fraction(self, a: str, b: str) -> float:
        low, high = sorted((a, b))
        return (zlib.crc32(f"{self.seed}|{low}|{high}".encode()) % 1_000_003) / 1_000_003

    def base(self, a: str, b: str) -> float:
        """One-way seconds from ``a`` to ``b`` without any spike."""
        key = (a, b)
        value = self._cache.get(key)
        if value is None:
            spec = self.spec
            if spec.model == "constant":
                value = spec.value
            elif spec.model == "uniform":
                value = spec.min + (spec.max - spec.min) * self._fraction(a, b)
            else:
                row = spec.matrix[self.region_of.get(a, 0)]
                value = row[self.region_of.get(b, 0)] * (1 + spec.jitter * self._fraction(a, b))
            self._cache[key] = value
        return value

    def __call__(self, a: str, b: str) -> float:
        """One-way seconds from ``a`` to ``b``, spike included."""
        return self.base(a, b) * self.factor
