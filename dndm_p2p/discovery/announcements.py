"""The wire form of GossipSub adverts: ``Announcement`` messages, split to size, checked on receipt.

One GossipSub message carries one ``dndm.v1.Announcement`` (``protocols/v1/discovery.proto``):
the advertiser's peer id and addresses, a batch of adverts and a sequence number.  A batch too
big for one message (:data:`MAX_ANNOUNCEMENT_SIZE`) is split over several by
:func:`encode_announcements`; :func:`decode_announcement` checks a received one, size first,
before anything else is read, and says why it is rejected (:class:`Rejection`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from google.protobuf.message import DecodeError
from multiaddr import Multiaddr
from multiaddr.exceptions import Error as MultiaddrError

from dndm_p2p.errors import ProtocolError
from protocols.v1 import advert_pb2, discovery_pb2

__all__ = [
    "MAX_ADDRS",
    "MAX_ADDR_SIZE",
    "MAX_ANNOUNCEMENT_SIZE",
    "RejectedAnnouncement",
    "Rejection",
    "decode_addrs",
    "decode_announcement",
    "encode_announcements",
]

#: The largest encoded Announcement sent or accepted, in bytes.
MAX_ANNOUNCEMENT_SIZE = 64 * 1024
#: The most addresses one Announcement may carry.
MAX_ADDRS = 32
#: The largest encoded address accepted, in bytes.
MAX_ADDR_SIZE = 256

_MAX_UINT64 = 2**64 - 1
_P2P = "p2p"


class Rejection(enum.Enum):
    """Why a received Announcement was rejected."""

    #: Bigger than :data:`MAX_ANNOUNCEMENT_SIZE`; not parsed.
    OVERSIZE = "oversize"
    #: Not a valid Announcement (bad protobuf, bad or too many addresses).
    MALFORMED = "malformed"
    #: Its ``peer_id`` is not the signer of the GossipSub message that carried it.
    FORGED = "forged"
    #: The GossipSub message's signature is missing or wrong (counted by the pubsub layer).
    SIGNATURE = "signature"


class RejectedAnnouncement(ProtocolError):
    """A received Announcement that breaks the protocol; ``reason`` says how."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason.value} announcement: {detail}")
        self.reason = reason


def encode_announcements(
    peer_id: bytes,
    addrs: Sequence[bytes],
    adverts: Sequence[advert_pb2.Advert],
    next_sequence: Callable[[], int],
    *,
    max_size: int = MAX_ANNOUNCEMENT_SIZE,
) -> tuple[list[discovery_pb2.Announcement], list[advert_pb2.Advert]]:
    """Pack ``adverts`` in order into as few Announcements of at most ``max_size`` bytes as fit.

    Each Announcement gets the next value of ``next_sequence``.  Returns the Announcements and
    the adverts that fit in none (alone with the peer id and addresses, still too big).
    """
    # The size of an Announcement without adverts, with the widest possible sequence.
    base = discovery_pb2.Announcement(peer_id=peer_id, addrs=addrs, sequence=_MAX_UINT64)
    base_size = base.ByteSize()
    batches: list[list[advert_pb2.Advert]] = []
    too_big: list[advert_pb2.Advert] = []
    current: list[advert_pb2.Advert] = []
    size = base_size
    for advert in adverts:
        cost = _field_cost(advert.ByteSize())
        if base_size + cost > max_size:
            too_big.append(advert)
            continue
        if current and size + cost > max_size:
            batches.append(current)
            current, size = [], base_size
        current.append(advert)
        size += cost
    if current:
        batches.append(current)
    messages = [
        discovery_pb2.Announcement(
            peer_id=peer_id, addrs=addrs, adverts=batch, sequence=next_sequence()
        )
        for batch in batches
    ]
    return messages, too_big


def decode_announcement(data: bytes, signer: bytes) -> discovery_pb2.Announcement:
    """Parse and check an Announcement that ``signer`` (a binary peer id) published.

    The adverts inside are not checked here (see :func:`dndm_p2p.core.adverts.parse_advert`).

    :raises RejectedAnnouncement: too big (checked before parsing), not a valid Announcement,
        or naming a peer other than ``signer``.
    """
    if len(data) > MAX_ANNOUNCEMENT_SIZE:
        raise RejectedAnnouncement(
            Rejection.OVERSIZE, f"{len(data)} bytes, more than {MAX_ANNOUNCEMENT_SIZE}"
        )
    announcement = discovery_pb2.Announcement()
    try:
        announcement.ParseFromString(data)
    except DecodeError as exc:
        raise RejectedAnnouncement(Rejection.MALFORMED, f"not a valid protobuf: {exc}") from None
    if announcement.peer_id != signer:
        raise RejectedAnnouncement(Rejection.FORGED, "its peer id is not the message's signer")
    decode_addrs(announcement.addrs)  # raises if one is bad
    return announcement


def decode_addrs(addrs: Sequence[bytes]) -> tuple[str, ...]:
    """The text form of an Announcement's binary addresses.

    :raises RejectedAnnouncement: too many, too long, not valid multiaddrs, or with a ``/p2p``
        component (addresses are announced without one).
    """
    if len(addrs) > MAX_ADDRS:
        raise RejectedAnnouncement(
            Rejection.MALFORMED, f"{len(addrs)} addresses, more than {MAX_ADDRS}"
        )
    decoded: list[str] = []
    for raw in addrs:
        if not raw or len(raw) > MAX_ADDR_SIZE:
            raise RejectedAnnouncement(Rejection.MALFORMED, "an empty or oversize address")
        try:
            addr = Multiaddr(raw)
            names = [proto.name for proto in addr.protocols()]
        except (MultiaddrError, ValueError) as exc:
            raise RejectedAnnouncement(
                Rejection.MALFORMED, f"an invalid address: {type(exc).__name__}: {exc}"
            ) from None
        if _P2P in names:
            raise RejectedAnnouncement(Rejection.MALFORMED, f"address {addr} has a /p2p part")
        decoded.append(str(addr))
    return tuple(decoded)


def _field_cost(size: int) -> int:
    """Bytes a length-delimited field of ``size`` bytes takes: tag, length varint, payload."""
    varint = 1
    while size >= 1 << (7 * varint):
        varint += 1
    return 1 + varint + size
