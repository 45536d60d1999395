"""DNDM's value records in the DHT, and the validator of the ``/dndm/`` namespace.

A node stores one record under :func:`~dht.keys.node_record_key` (``/dndm/node/<hash of its
peer id>``): a :class:`NodeRecord` (its addresses, relay addresses included, and a sequence
number) signed with its own libp2p key.  Anyone can check it without trusting the node that
served it: the record names the peer id, which must hash to the key; the peer id embeds the
public key; the public key checks the signature.  Of two valid records the higher sequence
wins, so a node's newest addresses replace the old ones everywhere.

Every DNDM node registers :class:`DndmValidator` for the namespace and runs its DHT with
``strict_validation``: a record in an unknown namespace, a forged or oversize record, or one whose
key does not name its signer, is refused with :class:`~protocols.errors.MalformedFrame` (the
DHT reports it to the peer that sent it) and never stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError
from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID
from libp2p.records.validator import Validator
from multiaddr import Multiaddr

from dht.keys import NODE_RECORD_NAMESPACE, node_record_key
from protocols.errors import MalformedFrame
from protocols.v1 import dht_pb2

__all__ = [
    "MAX_NODE_RECORD_SIZE",
    "DndmValidator",
    "NodeAddresses",
    "open_node_record",
    "sign_node_record",
]

#: The largest node record accepted, in bytes (a record lists a few dozen addresses at most).
MAX_NODE_RECORD_SIZE: Final = 8 * 1024
#: What a node record's signature covers, before the record's bytes.
_SIGNATURE_DOMAIN: Final = b"dndm-node-record:"
_MAX_ADDRS: Final = 64


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    """The content of a verified node record."""

    peer_id: str
    addrs: tuple[str, ...]
    sequence: int
    name: str


def sign_node_record(
    key: PrivateKey,
    peer_id: ID,
    addrs: Sequence[Multiaddr | str],
    *,
    name: str = "",
    sequence: int | None = None,
) -> bytes:
    """A signed node record for ``peer_id`` (whose private key is ``key``), ready to store."""
    record = dht_pb2.NodeRecord(
        peer_id=peer_id.to_bytes(),
        addrs=[Multiaddr(str(addr)).to_bytes() for addr in addrs][:_MAX_ADDRS],
        sequence=sequence if sequence is not None else time.time_ns() // 1_000_000,
        name=name[:64],
    )
    body = record.SerializeToString()
    signature = key.sign(_SIGNATURE_DOMAIN + body)
    return dht_pb2.SignedNodeRecord(record=body, signature=signature).SerializeToString()


def open_node_record(key: str, value: bytes) -> NodeAddresses:
    """Verify the record ``value`` stored under ``key`` and return its content.

    Raises :class:`MalformedFrame` when the record is oversize, undecodable, not signed by the
    peer its key names, or lists an invalid address.
    """
    if len(value) > MAX_NODE_RECORD_SIZE:
        raise MalformedFrame(f"node record of {len(value)} bytes exceeds {MAX_NODE_RECORD_SIZE}")
    if not key.startswith(f"/{NODE_RECORD_NAMESPACE}/node/"):
        raise MalformedFrame(f"{key!r} is not a /{NODE_RECORD_NAMESPACE}/node/ key")
    try:
        signed = dht_pb2.SignedNodeRecord.FromString(value)
        record = dht_pb2.NodeRecord.FromString(signed.record)
    except DecodeError as exc:
        raise MalformedFrame(f"node record under {key} does not decode: {exc}") from None
    try:
        peer_id = ID(record.peer_id)
        peer_text = peer_id.to_base58()
    except (ValueError, TypeError) as exc:
        raise MalformedFrame(f"node record names a bad peer id: {exc}") from None
    if node_record_key(peer_text) != key:
        raise MalformedFrame(f"node record under {key} is for {peer_id}")
    try:
        public_key = peer_id.extract_public_key()
    except Exception as exc:
        raise MalformedFrame(f"peer id {peer_id} does not embed its public key: {exc}") from None
    if public_key is None or not public_key.verify(
        _SIGNATURE_DOMAIN + signed.record, signed.signature
    ):
        raise MalformedFrame(f"node record for {peer_id} has a bad signature")
    if len(record.addrs) > _MAX_ADDRS:
        raise MalformedFrame(f"node record for {peer_id} lists more than {_MAX_ADDRS} addresses")
    try:
        addrs = tuple(str(Multiaddr(raw)) for raw in record.addrs)
    except Exception as exc:
        raise MalformedFrame(f"node record for {peer_id} has a bad address: {exc}") from None
    return NodeAddresses(str(peer_id), addrs, record.sequence, record.name)


class DndmValidator(Validator):
    """The kad-dht validator of the ``/dndm/`` namespace (see the module docstring)."""

    def validate(self, key: str, value: bytes) -> None:
        """Raise :class:`MalformedFrame` unless ``value`` is a valid record for ``key``."""
        open_node_record(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        """The index of the valid record with the highest sequence (0 when none is valid)."""
        best, best_sequence = 0, -1
        for index, value in enumerate(values):
            try:
                sequence = open_node_record(key, value).sequence
            except MalformedFrame:
                continue
            if sequence > best_sequence:
                best, best_sequence = index, sequence
        return best
