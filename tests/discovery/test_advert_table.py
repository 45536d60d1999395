"""GossipSub adverts without a network: the Announcement wire form and the AdvertTable."""

from __future__ import annotations

import itertools

import pytest
from multiaddr import Multiaddr

from dndm_p2p.core.adverts import RemoteAdvert, parse_advert
from dndm_p2p.discovery.advert_table import AdvertChange, AdvertTable
from dndm_p2p.discovery.announcements import (
    MAX_ANNOUNCEMENT_SIZE,
    RejectedAnnouncement,
    Rejection,
    decode_addrs,
    decode_announcement,
    encode_announcements,
)
from dndm_p2p.discovery.gossip import Announcement
from dndm_p2p.errors import ConfigError
from dndm_p2p.host.identity import generate_identity, peer_id_of
from protocols.v1 import advert_pb2, common_pb2, discovery_pb2

PEER = peer_id_of(generate_identity())
ADDR = Multiaddr("/ip4/127.0.0.1/tcp/4001").to_bytes()


def intent(handle_id: int, route: str = "", *, register: bool = True) -> advert_pb2.Advert:
    return advert_pb2.Advert(
        route=route or f"dndm.demo.v1.Temperature@robot.r{handle_id}",
        kind=common_pb2.ROUTE_KIND_INTENT,
        register=register,
        ttl_ms=10_000 if register else 0,
        handle_id=handle_id,
    )


# --- wire -------------------------------------------------------------------------------------


def test_a_large_batch_is_split_in_order_within_the_size_limit() -> None:
    long_route = "dndm.demo.v1.Temperature@robot." + "x" * 900
    adverts = [intent(n, f"{long_route}{n}") for n in range(200)]  # about 190 KiB in all
    counter = itertools.count(100)
    messages, too_big = encode_announcements(
        PEER.to_bytes(), [ADDR], adverts, lambda: next(counter)
    )
    assert too_big == []
    assert len(messages) >= 3
    assert all(m.ByteSize() <= MAX_ANNOUNCEMENT_SIZE for m in messages)
    assert [a.handle_id for m in messages for a in m.adverts] == list(range(200))
    assert [m.sequence for m in messages] == list(range(100, 100 + len(messages)))
    for message in messages:  # each one is accepted as it is
        decode_announcement(message.SerializeToString(), PEER.to_bytes())


def test_an_advert_too_big_for_any_message_is_returned() -> None:
    huge = intent(1, "x" * (MAX_ANNOUNCEMENT_SIZE + 1))
    messages, too_big = encode_announcements(PEER.to_bytes(), [], [intent(2), huge], lambda: 1)
    assert too_big == [huge]
    assert [a.handle_id for m in messages for a in m.adverts] == [2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * (MAX_ANNOUNCEMENT_SIZE + 1), Rejection.OVERSIZE),
        (b"\xff\xff\xff", Rejection.MALFORMED),
        (discovery_pb2.Announcement(peer_id=b"someone else").SerializeToString(), Rejection.FORGED),
        (
            discovery_pb2.Announcement(peer_id=PEER.to_bytes(), addrs=[b"garbage"]),
            Rejection.MALFORMED,
        ),
        (
            discovery_pb2.Announcement(
                peer_id=PEER.to_bytes(),
                addrs=[Multiaddr(f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}").to_bytes()],
            ),
            Rejection.MALFORMED,
        ),
        (
            discovery_pb2.Announcement(peer_id=PEER.to_bytes(), addrs=[ADDR] * 33),
            Rejection.MALFORMED,
        ),
    ],
)
def test_bad_announcements_are_rejected_with_their_reason(
    data: bytes | discovery_pb2.Announcement, reason: Rejection
) -> None:
    raw = data if isinstance(data, bytes) else data.SerializeToString()
    with pytest.raises(RejectedAnnouncement) as caught:
        decode_announcement(raw, PEER.to_bytes())
    assert caught.value.reason is reason


def test_addresses_decode_to_text() -> None:
    assert decode_addrs([ADDR]) == ("/ip4/127.0.0.1/tcp/4001",)


# --- the table --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def announcement(
    sequence: int, *adverts: advert_pb2.Advert, peer: str = "peer-a", addrs: tuple[str, ...] = ()
) -> Announcement:
    parsed: tuple[RemoteAdvert, ...] = tuple(parse_advert(a) for a in adverts)
    return Announcement(
        peer=peer, addrs=addrs, adverts=parsed, namespace="robot", sequence=sequence
    )


def kinds(changes: list[AdvertChange]) -> list[tuple[str, str, int]]:
    return [(c.kind, c.entry.peer, c.entry.advert.handle_id) for c in changes]


def test_newer_sequence_wins_older_is_ignored() -> None:
    clock = Clock()
    table = AdvertTable(clock=clock)
    assert kinds(table.apply(announcement(10, intent(1)))) == [("added", "peer-a", 1)]
    assert table.apply(announcement(11, intent(1))) == []  # a refresh changes nothing visible
    entry = table.get("peer-a", 1)
    assert entry is not None
    assert entry.sequence == 11
    assert table.apply(announcement(9, intent(1, register=False))) == []  # older: ignored
    assert table.get("peer-a", 1) is not None
    changes = table.apply(announcement(12, intent(1), addrs=("/ip4/127.0.0.1/tcp/9",)))
    assert kinds(changes) == [("updated", "peer-a", 1)]
    assert kinds(table.apply(announcement(13, intent(1, register=False)))) == [
        ("removed", "peer-a", 1)
    ]
    # A register older than the unregister, arriving late, does not bring it back.
    assert table.apply(announcement(12, intent(1))) == []
    assert len(table) == 0
    assert kinds(table.apply(announcement(14, intent(1)))) == [("added", "peer-a", 1)]


def test_entries_expire_unless_refreshed() -> None:
    clock = Clock()
    table = AdvertTable(clock=clock)
    table.apply(announcement(1, intent(1), intent(2)))  # TTL 10 s
    clock.now += 6
    table.apply(announcement(2, intent(1)))  # only 1 is refreshed
    assert table.next_expiry() == 1010.0
    clock.now += 5
    assert kinds(table.expire()) == [("expired", "peer-a", 2)]
    assert [e.advert.handle_id for e in table.entries()] == [1]
    clock.now += 5
    assert kinds(table.expire()) == [("expired", "peer-a", 1)]
    assert table.next_expiry() is None


def test_ttl_is_capped_and_defaulted() -> None:
    clock = Clock()
    table = AdvertTable(default_ttl=5, max_ttl=20, clock=clock)
    forever = intent(1)
    forever.ttl_ms = 10**9
    no_ttl = intent(2)
    no_ttl.ttl_ms = 0
    table.apply(announcement(1, forever, no_ttl))
    expiry = {e.advert.handle_id: e.expires_at - clock.now for e in table.entries()}
    assert expiry == {1: 20, 2: 5}


def test_peers_are_kept_apart_and_forgotten() -> None:
    table = AdvertTable(clock=Clock())
    table.apply(announcement(5, intent(1), peer="peer-a"))
    table.apply(announcement(1, intent(1), peer="peer-b"))  # its own sequence space
    assert len(table) == 2
    assert kinds(table.forget_peer("peer-a")) == [("removed", "peer-a", 1)]
    assert [e.peer for e in table.entries()] == ["peer-b"]


def test_a_full_table_refuses_new_entries() -> None:
    table = AdvertTable(max_entries=1, clock=Clock())
    table.apply(announcement(1, intent(1), intent(2)))
    assert len(table) == 1
    assert table.refused == 1


@pytest.mark.parametrize(
    "kwargs", [{"default_ttl": 0}, {"max_ttl": 1.0}, {"max_entries": 0}, {"default_ttl": "5"}]
)
def test_table_settings_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AdvertTable(**kwargs)  # type: ignore[arg-type]
