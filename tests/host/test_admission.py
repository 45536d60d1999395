"""InboundAdmission: limits per IP, subnet and pending handshakes; the non-DNDM budget."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from dndm_p2p.errors import ConfigError
from dndm_p2p.host.admission import InboundAdmission
from dndm_p2p.host.limits import ConnectionLimits


def remote(ip: str, port: int = 4001) -> Multiaddr:
    kind = "ip6" if ":" in ip else "ip4"
    return Multiaddr(f"/{kind}/{ip}/tcp/{port}")


def fresh_peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


class FakeHost:
    """Counts connections and records the peers closed."""

    def __init__(self) -> None:
        self.connections = 0
        self.closed: list[ID] = []

    def close(self, peer: ID) -> None:
        self.closed.append(peer)
        self.connections -= 1


def admission(
    limits: ConnectionLimits, max_connections: int = 100
) -> tuple[InboundAdmission, FakeHost]:
    host = FakeHost()
    return InboundAdmission(limits, max_connections, lambda: host.connections, host.close), host


async def test_pending_handshakes_are_limited_per_ip_and_released() -> None:
    gate, _ = admission(ConnectionLimits(max_pending_per_ip=2, max_per_ip=3))
    first = await gate.admit(remote("10.0.0.1"))
    second = await gate.admit(remote("10.0.0.1"))
    assert first is not None
    assert second is not None
    assert await gate.admit(remote("10.0.0.1")) is None
    assert gate.stats.refused_pending_per_ip == 1
    assert await gate.admit(remote("10.0.0.2")) is not None  # another IP
    first.established(fresh_peer())  # no longer pending, still counts for the IP
    second.established(fresh_peer())
    assert gate.pending_count() == 1
    assert await gate.admit(remote("10.0.0.1")) is not None
    assert await gate.admit(remote("10.0.0.1")) is None  # three from that IP now
    assert gate.stats.refused_per_ip == 1
    second.release()
    second.release()  # released once only
    assert await gate.admit(remote("10.0.0.1")) is not None


async def test_subnets_are_slash_24_and_slash_64_by_default() -> None:
    gate, _ = admission(ConnectionLimits(max_per_subnet=2, max_pending_per_subnet=2))
    assert await gate.admit(remote("192.0.2.1")) is not None
    assert await gate.admit(remote("192.0.2.200")) is not None
    assert await gate.admit(remote("192.0.2.7")) is None
    assert await gate.admit(remote("192.0.3.7")) is not None
    assert await gate.admit(remote("2001:db8::1")) is not None
    assert await gate.admit(remote("2001:db8::ffff:1")) is not None
    assert await gate.admit(remote("2001:db8::2")) is None
    assert await gate.admit(remote("2001:db8:0:1::1")) is not None
    assert gate.stats.refused_pending_per_subnet == 2


async def test_non_dndm_peers_beyond_their_budget_are_closed_oldest_first() -> None:
    gate, host = admission(ConnectionLimits(max_foreign=2))
    peers = [fresh_peer() for _ in range(3)]
    for index, peer in enumerate(peers):
        ticket = await gate.admit(remote(f"10.0.1.{index + 1}"))
        assert ticket is not None
        ticket.established(peer)
        host.connections += 1
    for peer in peers:
        await gate.mark_foreign(peer)
    assert host.closed == [peers[0]]
    assert gate.foreign_count() == 2
    assert gate.stats.trimmed_foreign == 1


async def test_a_non_dndm_peer_gives_way_when_no_slot_is_left() -> None:
    gate, host = admission(ConnectionLimits(), max_connections=3)
    foreign = fresh_peer()
    ticket = await gate.admit(remote("10.0.2.1"))
    assert ticket is not None
    ticket.established(foreign)
    host.connections = 2
    await gate.mark_foreign(foreign)
    assert await gate.admit(remote("10.0.2.2")) is not None  # the third slot is free
    assert host.closed == []
    assert await gate.admit(remote("10.0.2.3")) is not None  # none is: the foreign one goes
    assert host.closed == [foreign]


async def test_a_peer_we_dialled_is_never_counted_as_foreign() -> None:
    gate, host = admission(ConnectionLimits(max_foreign=0))
    await gate.mark_foreign(fresh_peer())
    assert gate.foreign_count() == 0
    assert host.closed == []


@pytest.mark.parametrize(
    "bad",
    [
        {"max_pending": 0},
        {"max_per_ip": 0},
        {"ipv4_subnet_bits": 33},
        {"ipv6_subnet_bits": 0},
        {"max_foreign": -1},
        {"max_pending_per_ip": 20, "max_per_ip": 10},
    ],
)
def test_bad_limits_are_refused_naming_the_field(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="ConnectionLimits"):
        ConnectionLimits(**bad)
