"""Connection limits of a host: per IP, per subnet, pending handshakes, non-DNDM peers.

Importing this module loads no py-libp2p module, so a node's configuration can name
:class:`ConnectionLimits`; :mod:`dndm_p2p.host.admission` enforces it.  Every field is checked
on construction (:class:`~dndm_p2p.errors.ConfigError` naming the field).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.validation import check_count, invalid

__all__ = ["ConnectionLimits"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many inbound connections a host admits, by source.

    A connection is *pending* from its TCP accept until its security and muxer handshakes
    end; it counts against its IP's and subnet's limits from accept until it closes.  Subnets
    are ``/ipv4_subnet_bits`` (IPv4) and ``/ipv6_subnet_bits`` (IPv6) prefixes.

    :param max_pending: pending inbound connections, in total.
    :param max_pending_per_ip: pending inbound connections from one IP address.
    :param max_pending_per_subnet: pending inbound connections from one subnet.
    :param max_per_ip: inbound connections (pending or established) from one IP address.
    :param max_per_subnet: inbound connections (pending or established) from one subnet.
    :param ipv4_subnet_bits: prefix length of an IPv4 subnet (1 to 32).
    :param ipv6_subnet_bits: prefix length of an IPv6 subnet (1 to 128).
    :param max_foreign: inbound connections of peers that do not speak DNDM (they never open a
        DNDM control session: DHT-only clients, say).  Beyond it the oldest such connection is
        closed; and when the host has no slot left for a new connection, one of these goes
        first, so a DNDM peer can always connect.
    """

    max_pending: int = 128
    max_pending_per_ip: int = 16
    max_pending_per_subnet: int = 32
    max_per_ip: int = 64
    max_per_subnet: int = 256
    ipv4_subnet_bits: int = 24
    ipv6_subnet_bits: int = 64
    max_foreign: int = 64

    def __post_init__(self) -> None:
        for name in (
            "max_pending",
            "max_pending_per_ip",
            "max_pending_per_subnet",
            "max_per_ip",
            "max_per_subnet",
        ):
            check_count(self, name, at_least=1)
        check_count(self, "ipv4_subnet_bits", at_least=1, at_most=32)
        check_count(self, "ipv6_subnet_bits", at_least=1, at_most=128)
        check_count(self, "max_foreign", at_least=0)
        if self.max_pending_per_ip > self.max_per_ip:
            raise invalid(
                self,
                "max_pending_per_ip",
                f"must be at most max_per_ip ({self.max_per_ip}), not {self.max_pending_per_ip}",
            )
