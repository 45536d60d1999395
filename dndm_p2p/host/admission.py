"""Admission of inbound connections: limits per IP, per subnet and on pending handshakes, and a
separate budget for peers that do not speak DNDM.

:class:`InboundAdmission` is installed on one host by :func:`dndm_p2p.host.build.build_host`
(through :func:`protocols.libp2p_fixes.host.release_inbound_slots`).  It enforces one
:class:`~dndm_p2p.host.limits.ConnectionLimits`:

* every inbound TCP connection is checked at accept, before any handshake: a connection over
  a limit is closed at once and counted in :class:`AdmissionStats` by the limit it hit;
* an admitted connection counts against its IP and subnet until it closes, and as pending
  until its handshakes end;
* the node marks inbound peers that turned out not to speak DNDM (:meth:`mark_foreign`); they
  have a budget of their own, and when the host has no slot left for a new connection the
  oldest of them is closed to make room, so a DNDM peer can always connect.

Only inbound connections are limited: the host's own dials are its own choice.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from libp2p.abc import IHost
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from dndm_p2p.host.limits import ConnectionLimits

__all__ = ["AdmissionStats", "InboundAdmission"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AdmissionStats:
    """Inbound connections refused or closed, by the limit that applied."""

    admitted: int = 0
    refused_pending: int = 0
    refused_pending_per_ip: int = 0
    refused_pending_per_subnet: int = 0
    refused_per_ip: int = 0
    refused_per_subnet: int = 0
    #: Connections of non-DNDM peers closed: over their budget, or to make room.
    trimmed_foreign: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}


class _Ticket:
    """One admitted inbound connection's claim on its IP's and subnet's counts."""

    __slots__ = ("_admission", "ip", "peer_id", "pending", "released", "subnet")

    def __init__(self, admission: InboundAdmission, ip: str, subnet: str) -> None:
        self._admission = admission
        self.ip = ip
        self.subnet = subnet
        self.pending = True
        self.peer_id: ID | None = None
        self.released = False

    def established(self, peer_id: ID) -> None:
        self._admission._established(self, peer_id)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._release(self)


class InboundAdmission:
    """The inbound admission of one host (see the module docstring).

    :param limits: the limits.
    :param max_connections: the host's connection limit (inbound and outbound).
    :param connection_count: how many connections the host has open now.
    :param close_peer: closes every connection to a peer (called to trim non-DNDM peers).
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        max_connections: int,
        connection_count: Callable[[], int],
        close_peer: Callable[[ID], object],
    ) -> None:
        self.limits = limits
        self.stats = AdmissionStats()
        self._max_connections = max_connections
        self._connection_count = connection_count
        self._close_peer = close_peer
        self._pending = 0
        self._pending_by_ip: Counter[str] = Counter()
        self._pending_by_subnet: Counter[str] = Counter()
        self._by_ip: Counter[str] = Counter()
        self._by_subnet: Counter[str] = Counter()
        #: Inbound peers, established, by peer id -> their tickets.
        self._inbound: dict[ID, list[_Ticket]] = {}
        #: Inbound peers marked as not speaking DNDM, oldest first.
        self._foreign: OrderedDict[ID, None] = OrderedDict()

    @classmethod
    def for_host(
        cls, host: IHost, limits: ConnectionLimits, max_connections: int
    ) -> InboundAdmission:
        """The admission of ``host``, counting and closing its swarm's connections."""
        network = host.get_network()

        def count() -> int:
            return sum(len(conns) for conns in network.connections.values())

        def close(peer: ID) -> object:
            return network.close_peer(peer)

        return cls(limits, max_connections, count, close)

    # -- what the host's inbound path calls -------------------------------------------------------

    async def admit(self, remote: Multiaddr | None) -> _Ticket | None:
        """A ticket for a new inbound connection from ``remote``, or None to refuse it."""
        ip = _ip_of(remote)
        if ip is None:
            ip, subnet = "?", "?"
        else:
            subnet = self._subnet_of(ip)
        limits, stats = self.limits, self.stats
        problem: str | None = None
        if self._pending >= limits.max_pending:
            stats.refused_pending += 1
            problem = f"{self._pending} handshakes pending (max_pending)"
        elif self._pending_by_ip[ip] >= limits.max_pending_per_ip:
            stats.refused_pending_per_ip += 1
            problem = f"{self._pending_by_ip[ip]} handshakes pending from {ip}"
        elif self._pending_by_subnet[subnet] >= limits.max_pending_per_subnet:
            stats.refused_pending_per_subnet += 1
            problem = f"{self._pending_by_subnet[subnet]} handshakes pending from {subnet}"
        elif self._by_ip[ip] >= limits.max_per_ip:
            stats.refused_per_ip += 1
            problem = f"{self._by_ip[ip]} connections from {ip} (max_per_ip)"
        elif self._by_subnet[subnet] >= limits.max_per_subnet:
            stats.refused_per_subnet += 1
            problem = f"{self._by_subnet[subnet]} connections from {subnet} (max_per_subnet)"
        if problem is not None:
            logger.debug("inbound connection from %s refused: %s", remote, problem)
            return None
        ticket = _Ticket(self, ip, subnet)
        self._pending += 1
        self._pending_by_ip[ip] += 1
        self._pending_by_subnet[subnet] += 1
        self._by_ip[ip] += 1
        self._by_subnet[subnet] += 1
        stats.admitted += 1
        # Every pending handshake needs a slot when it ends: make room while one is short.
        while self._connection_count() + self._pending > self._max_connections:
            if not await self._trim_one_foreign("to make room for a new connection"):
                break
        return ticket

    def _established(self, ticket: _Ticket, peer_id: ID) -> None:
        self._end_pending(ticket)
        ticket.peer_id = peer_id
        self._inbound.setdefault(peer_id, []).append(ticket)

    def _release(self, ticket: _Ticket) -> None:
        self._end_pending(ticket)
        _decrement(self._by_ip, ticket.ip)
        _decrement(self._by_subnet, ticket.subnet)
        peer = ticket.peer_id
        if peer is not None:
            tickets = self._inbound.get(peer, [])
            if ticket in tickets:
                tickets.remove(ticket)
            if not tickets:
                self._inbound.pop(peer, None)
                self._foreign.pop(peer, None)

    def _end_pending(self, ticket: _Ticket) -> None:
        if ticket.pending:
            ticket.pending = False
            self._pending -= 1
            _decrement(self._pending_by_ip, ticket.ip)
            _decrement(self._pending_by_subnet, ticket.subnet)

    # -- what the node tells ----------------------------------------------------------------------

    async def mark_foreign(self, peer_id: ID) -> None:
        """``peer_id`` does not speak DNDM: if it connected to us, it uses the non-DNDM budget;
        over it, the oldest such peer is disconnected."""
        if peer_id not in self._inbound:
            return
        self._foreign[peer_id] = None
        while len(self._foreign) > self.limits.max_foreign:
            await self._trim_one_foreign("over the non-DNDM budget (max_foreign)")

    def foreign_count(self) -> int:
        """How many inbound peers that do not speak DNDM are connected."""
        return len(self._foreign)

    def pending_count(self) -> int:
        """How many inbound handshakes are pending."""
        return self._pending

    async def _trim_one_foreign(self, why: str) -> bool:
        if not self._foreign:
            return False
        peer, _ = self._foreign.popitem(last=False)
        self.stats.trimmed_foreign += 1
        logger.info("closing the connection of non-DNDM peer %s: %s", peer, why)
        try:
            result = self._close_peer(peer)
            if hasattr(result, "__await__"):
                await result
        except Exception as exc:
            logger.debug("closing non-DNDM peer %s failed: %r", peer, exc)
        return True

    def _subnet_of(self, ip: str) -> str:
        address = ipaddress.ip_address(ip)
        bits = (
            self.limits.ipv4_subnet_bits if address.version == 4 else self.limits.ipv6_subnet_bits
        )
        return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def _ip_of(remote: Multiaddr | None) -> str | None:
    if remote is None:
        return None
    for proto in ("ip4", "ip6"):
        try:
            return str(ipaddress.ip_address(str(remote.value_for_protocol(proto))))
        except Exception:
            continue
    return None


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
