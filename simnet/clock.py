"""Virtual time for simulations: trio's MockClock, py-libp2p's wall-clock reads, seeded randomness.

* :func:`mock_clock` is the clock to run a simulation under: trio's ``MockClock`` with
  ``autojump_threshold=0``, so virtual time jumps to the next timer as soon as every task waits.
* :func:`libp2p_virtual_time` is the one place where py-libp2p's wall-clock reads follow that
  clock.  py-libp2p calls ``time.time()`` and ``time.monotonic()`` (and ``datetime.now()`` for
  DHT record timestamps) in about sixty modules: provider and record expiry, the ADD_PROVIDER
  rate limit, GossipSub backoffs and caches, peerstore TTLs.  Under a mock clock those would
  keep reading the wall clock, so a 24-hour record would never expire in a two-hour virtual
  run, and every rate limit would see the whole run compressed into seconds.  The context
  manager swaps the ``time`` (and ``datetime``) globals of the loaded ``libp2p.*`` modules for
  proxies reading ``epoch + trio.current_time()``, and always restores them on exit.
* :func:`seeded_random` derives independent, reproducible random streams from one seed.
"""

from __future__ import annotations

import datetime as _datetime
import hashlib
import importlib
import random
import sys
import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Final

import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair

__all__ = [
    "PRELOADED_MODULES",
    "key_pair_from",
    "libp2p_virtual_time",
    "mock_clock",
    "seeded_random",
    "virtual_now",
]

#: libp2p modules imported before patching, so that their clocks are patched too (modules
#: imported later keep the wall clock; import them here or before entering the patch).
PRELOADED_MODULES: Final = (
    "libp2p",
    "libp2p.kad_dht.kad_dht",
    "libp2p.kad_dht.provider_store",
    "libp2p.kad_dht.value_store",
    "libp2p.kad_dht.routing_table",
    "libp2p.pubsub.gossipsub",
    "libp2p.pubsub.pubsub",
    "libp2p.host.ping",
    "libp2p.identity.identify.identify",
)


def mock_clock() -> trio.testing.MockClock:
    """A virtual clock for ``trio.run(..., clock=mock_clock())``: jumps whenever all tasks wait."""
    return trio.testing.MockClock(autojump_threshold=0)


class _VirtualTime:
    """Reads a virtual wall clock: ``epoch + trio.current_time()`` inside a trio run."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.monotonic_base = _time.monotonic()

    def elapsed(self) -> float | None:
        try:
            return trio.current_time()
        except RuntimeError:  # outside a trio run: there is no virtual clock to read
            return None

    def time(self) -> float:
        elapsed = self.elapsed()
        return _time.time() if elapsed is None else self.epoch + elapsed

    def monotonic(self) -> float:
        elapsed = self.elapsed()
        return _time.monotonic() if elapsed is None else self.monotonic_base + elapsed


class _TimeModule(ModuleType):
    """Stands in for the ``time`` module inside one libp2p module; the rest is the real one."""

    def __init__(self, clock: _VirtualTime) -> None:
        super().__init__("time")
        self._clock = clock

    def time(self) -> float:
        return self._clock.time()

    def time_ns(self) -> int:
        return int(self._clock.time() * 1e9)

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def monotonic_ns(self) -> int:
        return int(self._clock.monotonic() * 1e9)

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def _datetime_class(clock: _VirtualTime) -> type[_datetime.datetime]:
    class VirtualDateTime(_datetime.datetime):
        """``datetime`` whose ``now()``/``utcnow()`` read the virtual clock."""

        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> VirtualDateTime:
            return cls.fromtimestamp(clock.time(), tz)

        @classmethod
        def utcnow(cls) -> VirtualDateTime:
            stamp = cls.fromtimestamp(clock.time(), _datetime.UTC)
            return stamp.replace(tzinfo=None)

    return VirtualDateTime


def virtual_now(epoch: float) -> float:
    """The virtual wall-clock time that :func:`libp2p_virtual_time` shows: epoch + trio time."""
    return epoch + trio.current_time()


@contextmanager
def libp2p_virtual_time(epoch: float | None = None) -> Iterator[float]:
    """While inside, py-libp2p's ``time.time()``/``monotonic()``/``datetime.now()`` are virtual.

    Inside a trio run they read ``epoch + trio.current_time()`` (``epoch``: the wall-clock time
    on entry unless given); outside one, the real clocks.  Applies to the ``libp2p.*`` modules
    loaded on entry (:data:`PRELOADED_MODULES` are imported first).  Yields the epoch.  On exit
    every patched module gets its own ``time``/``datetime`` back, even after an exception.
    """
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    clock = _VirtualTime(_time.time() if epoch is None else epoch)
    time_proxy = _TimeModule(clock)
    datetime_proxy = _datetime_class(clock)
    patched: list[tuple[ModuleType, str, object]] = []
    try:
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "libp2p" or name.startswith("libp2p.")):
                continue
            namespace = vars(module)
            if namespace.get("time") is _time:
                patched.append((module, "time", _time))
                module.time = time_proxy  # type: ignore[attr-defined]
            if namespace.get("datetime") is _datetime.datetime:
                patched.append((module, "datetime", _datetime.datetime))
                module.datetime = datetime_proxy  # type: ignore[attr-defined]
        yield clock.epoch
    finally:
        for module, attribute, original in reversed(patched):
            setattr(module, attribute, original)


def seeded_random(seed: int, *names: str | int) -> random.Random:
    """A random stream for one purpose (``names``, e.g. ``"keys", 3``) derived from ``seed``.

    Streams for different names are independent, and each is the same in every run with the
    same seed, whatever else the run draws.
    """
    label = "/".join(str(part) for part in (seed, *names)).encode()
    return random.Random(int.from_bytes(hashlib.sha256(label).digest(), "big"))


def key_pair_from(rng: random.Random) -> KeyPair:
    """An Ed25519 identity drawn from ``rng`` (reproducible peer ids)."""
    return create_new_key_pair(rng.randbytes(32))
