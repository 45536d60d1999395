"""Counters and timings of the NAT component, for ``node.nat.metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NatMetrics"]


@dataclass(slots=True)
class NatMetrics:
    """What the NAT component did so far.

    ``reachability`` is ``"unknown"``, ``"public"`` or ``"private"``; ``direct_times`` holds,
    per successful hole punch, the seconds from the relayed connection's appearance to the
    direct connection's.
    """

    reachability: str = "unknown"
    reachability_changes: int = 0
    autonat_queries: int = 0
    autonat_dialbacks_served: int = 0
    reservations_active: int = 0
    reservations_made: int = 0
    reservation_failures: int = 0
    relay_switches: int = 0
    relayed_dials: int = 0
    circuits_served: int = 0
    punch_attempts: int = 0
    punch_successes: int = 0
    punch_failures: int = 0
    direct_times: list[float] = field(default_factory=list)
    upnp_mapped: bool = False

    def snapshot(self) -> dict[str, object]:
        """A plain dict of every figure (for JSON and the admin endpoint)."""
        return {name: getattr(self, name) for name in self.__slots__}
