"""Dial hygiene: only a peer's own addresses, per-source rates, failed-address back-off."""

from __future__ import annotations

import pytest

from dndm_p2p.discovery.config import DialLimits
from dndm_p2p.discovery.dialing import DialGuard, own_addrs
from dndm_p2p.errors import ConfigError

PEER = "12D3KooWHHzSeKaY8xuZVzkLbKFfvNgPPeKhFBGrMbNzbm5akpqu"
OTHER = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE"


def test_own_addrs_keeps_direct_and_relayed_addresses_of_the_peer_itself() -> None:
    addrs = [
        "/ip4/192.0.2.1/tcp/4001",
        f"/ip4/192.0.2.2/tcp/4001/p2p/{PEER}",
        f"/ip4/192.0.2.3/tcp/4001/p2p/{OTHER}",  # names someone else
        f"/ip4/192.0.2.4/tcp/4001/p2p/{OTHER}/p2p-circuit",  # through a relay: fine
        f"/ip4/192.0.2.5/tcp/4001/p2p/{PEER}/p2p-circuit",  # a relay that is the peer itself
        "not an address",
    ]
    kept, dropped = own_addrs(PEER, addrs)
    assert kept == [
        "/ip4/192.0.2.1/tcp/4001",
        "/ip4/192.0.2.2/tcp/4001",
        f"/ip4/192.0.2.4/tcp/4001/p2p/{OTHER}/p2p-circuit",
    ]
    assert dropped == 3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_source_gets_its_burst_of_dials_then_its_rate() -> None:
    clock = Clock()
    guard = DialGuard(DialLimits(source_rate=1.0, source_burst=2), clock)
    assert [guard.may_dial("gossip:a", f"/ip4/10.0.0.{n}/tcp/1") for n in range(3)] == [
        True,
        True,
        False,
    ]
    assert guard.may_dial("gossip:b", "/ip4/10.0.0.9/tcp/1")
    clock.now = 1.0
    assert guard.may_dial("gossip:a", "/ip4/10.0.0.4/tcp/1")
    assert guard.counters.as_dict()["discovery.dial_refused_rate"] == 1


def test_an_address_that_failed_is_left_alone_whoever_names_it() -> None:
    clock = Clock()
    guard = DialGuard(DialLimits(failed_addr_backoff=30.0, source_burst=10), clock)
    addr = "/ip4/10.0.0.1/tcp/1"
    assert guard.may_dial("gossip:a", addr)
    guard.failed(addr)
    assert not guard.may_dial("gossip:b", addr)
    clock.now = 31.0
    assert guard.may_dial("gossip:b", addr)
    assert guard.counters.backed_off == 1


@pytest.mark.parametrize(
    "bad", [{"source_rate": 0}, {"source_burst": 0}, {"failed_addr_backoff": -1}]
)
def test_bad_dial_limits_are_refused_naming_the_field(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="DialLimits"):
        DialLimits(**bad)
