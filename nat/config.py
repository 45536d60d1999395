"""NAT traversal settings: one validated, immutable object (times in seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from multiaddr import Multiaddr

from protocols.validation import (
    check_choice,
    check_count,
    check_flag,
    check_seconds,
    check_size,
    check_strings,
    invalid,
)

__all__ = ["NatConfig"]


@dataclass(frozen=True, slots=True)
class NatConfig:
    """What the NAT component of a node does.

    Everything is off by default except what costs nothing: a node answers AutoNAT dial-back
    requests (``autonat_server``) and accepts relayed connections and hole punches to itself.
    """

    #: Serve as a circuit relay v2 relay (opt-in; meant for publicly reachable nodes).
    relay_service: bool = False
    #: Relay limits: reservations and relayed connections at once, reservation lifetime,
    #: and per relayed connection its longest life and most bytes.
    relay_max_reservations: int = 64
    relay_max_circuits: int = 64
    relay_reservation_ttl: int = 3600
    relay_circuit_duration: int = 3600
    relay_circuit_bytes: int = 64 << 20
    #: Reserve a slot on relays when this node is private (or ``always``): ``auto`` decides
    #: from reachability, ``always`` and ``never`` force it.
    relay_client: str = "auto"
    #: Relays to use (``/ip4/…/tcp/…/p2p/<id>``), tried before bootstrap nodes and relays
    #: discovered among connected peers.
    relays: tuple[str, ...] = ()
    #: How many relays to hold a reservation on at once.
    reservations: int = 1
    #: Seconds between reservation renewals (well inside the relay's reservation lifetime).
    renew_interval: float = 300.0
    #: Ask peers to dial us back (AutoNAT) to learn whether we are publicly reachable.
    autonat: bool = True
    #: Answer other peers' AutoNAT dial-back requests.
    autonat_server: bool = True
    #: Agreeing peers needed for a verdict (public or private).
    autonat_confirmations: int = 3
    #: Seconds between reachability checks once a verdict is reached (sooner before that).
    autonat_interval: float = 300.0
    #: How long a dial-back may take before the address counts as unreachable.
    dialback_timeout: float = 5.0
    #: Upgrade relayed connections to direct ones (DCUtR hole punching).
    hole_punching: bool = True
    #: Seconds between a relayed connection's appearance and the hole punch.
    punch_delay: float = 0.0
    #: Seconds the relayed connection stays open after a direct one is up.
    relay_close_grace: float = 0.5
    #: Map the listen port on a UPnP gateway (off by default; removed at shutdown).
    upnp: bool = False

    def __post_init__(self) -> None:
        for flag in ("relay_service", "autonat", "autonat_server", "hole_punching", "upnp"):
            check_flag(self, flag)
        for addr in check_strings(self, "relays"):
            try:
                maddr = Multiaddr(addr)
            except Exception as exc:
                raise invalid(self, "relays", f"{addr!r} is not a multiaddr: {exc}") from None
            if maddr.get_peer_id() is None:
                raise invalid(self, "relays", f"relay address {addr} has no /p2p/<peer id>")
        check_choice(self, "relay_client", ("auto", "always", "never"))
        for name in (
            "relay_max_reservations",
            "relay_max_circuits",
            "relay_reservation_ttl",
            "relay_circuit_duration",
            "reservations",
            "autonat_confirmations",
        ):
            check_count(self, name, at_least=1)
        check_size(self, "relay_circuit_bytes", at_least=1)
        for name in ("renew_interval", "autonat_interval", "dialback_timeout"):
            check_seconds(self, name, above=0)
        for name in ("relay_close_grace", "punch_delay"):
            check_seconds(self, name, at_least=0)
        if self.renew_interval >= self.relay_reservation_ttl:
            raise invalid(self, "renew_interval", "must be shorter than relay_reservation_ttl")
