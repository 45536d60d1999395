"""Dial hygiene for discovery: which addresses of a discovered peer may be dialled, and when.

* :func:`own_addrs` keeps the addresses that name the peer itself: direct transport addresses
  (``/ip4/…/tcp/…``, optionally ending in ``/p2p/<the peer>``) and relayed ones through a
  relay for it (``<relay addr>/p2p/<relay>/p2p-circuit``); an address naming any other peer
  at its end is dropped.  Callers pass only addresses the peer signed (or announced) itself.
* :class:`DialGuard` rate-limits the dials each source causes (token bucket per source) and
  keeps addresses that failed out of reach for :attr:`DialLimits.failed_addr_backoff`, so
  that no number of adverts makes this node a reflector towards an address someone chose.

Every refusal is counted in :class:`DialCounters`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multiaddr import Multiaddr

from dndm_p2p.discovery.config import DialLimits
from protocols.ratelimit import KeyedRateLimit

__all__ = ["DialCounters", "DialGuard", "own_addrs"]

_MAX_FAILED_ADDRS = 4096


@dataclass(slots=True)
class DialCounters:
    """Dials discovery did not make, by reason."""

    #: Addresses dropped because they name another peer, or are not signed by the peer.
    foreign_addrs: int = 0
    #: Dials refused because their source was over its rate.
    rate_limited: int = 0
    #: Dials refused because the address failed recently.
    backed_off: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters, named for :meth:`dndm_p2p.node.Node.counters`."""
        return {
            "discovery.dial_refused_foreign_addr": self.foreign_addrs,
            "discovery.dial_refused_rate": self.rate_limited,
            "discovery.dial_refused_backoff": self.backed_off,
        }


def own_addrs(peer: str, addrs: Iterable[str]) -> tuple[list[str], int]:
    """The addresses of ``addrs`` that name ``peer`` itself, without ``/p2p/<peer>``, and how
    many were dropped (see the module docstring)."""
    kept: list[str] = []
    dropped = 0
    suffix = f"/p2p/{peer}"
    for addr in addrs:
        text = addr.removesuffix(suffix)
        try:
            names = [proto.name for proto in Multiaddr(text).protocols()]
        except Exception:
            dropped += 1
            continue
        p2p = names.count("p2p")
        relayed = "p2p-circuit" in names
        if p2p == 0 and not relayed and names:
            kept.append(text)
        elif relayed and p2p == 1 and names[-1] == "p2p-circuit" and names[-2] == "p2p":
            if text.rpartition("/p2p/")[2].removesuffix("/p2p-circuit") != peer:
                kept.append(text)
            else:
                dropped += 1
        else:
            dropped += 1
    return list(dict.fromkeys(kept)), dropped


class DialGuard:
    """Rate limits and failure back-off of discovery's dials (see the module docstring)."""

    def __init__(self, limits: DialLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.counters = DialCounters()
        self._clock = clock
        self._sources = KeyedRateLimit(limits.source_rate, limits.source_burst, clock)
        self._failed: OrderedDict[str, float] = OrderedDict()

    def may_dial(self, source: str, addr: str) -> bool:
        """Whether one dial of ``addr`` on behalf of ``source`` may go ahead now (counted)."""
        until = self._failed.get(addr)
        if until is not None:
            if until > self._clock():
                self.counters.backed_off += 1
                return False
            del self._failed[addr]
        if not self._sources.allow(source):
            self.counters.rate_limited += 1
            return False
        return True

    def failed(self, addr: str) -> None:
        """A dial of ``addr`` failed: leave it alone for the back-off time."""
        self._failed[addr] = self._clock() + self.limits.failed_addr_backoff
        self._failed.move_to_end(addr)
        while len(self._failed) > _MAX_FAILED_ADDRS:
            self._failed.popitem(last=False)

    def succeeded(self, addr: str) -> None:
        """A dial of ``addr`` worked."""
        self._failed.pop(addr, None)

    def dropped_foreign(self, count: int) -> None:
        """``count`` addresses were dropped as not the peer's own."""
        self.counters.foreign_addrs += count
