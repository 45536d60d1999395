"""Routes as Kademlia keys.

Every route has two DHT keys: the *intent key*, which publishers provide, and the *interest key*,
which subscribers provide, so whichever side comes later finds the other with one
``find_providers``.  A key is the CIDv1 (``raw`` codec, SHA-256 multihash) of a namespaced
route id::

    /dndm/v1/intent/<route id>      /dndm/v1/interest/<route id>

It is a CID because go-libp2p and js-libp2p peers reject provider keys that are not; the string
form is base32 (``b…``), as go and js print CIDs.  The *route id* of a hashed route is its hash
alone, so the key of a hashed route derives from the hash and nothing else: a DHT record never
holds a hashed route's plain name, or even its prefix.

This module knows only route ids (strings); it does not import :mod:`dndm_p2p`.
"""

from __future__ import annotations

import base64
import hashlib
from enum import Enum
from typing import Final

import cid
import multihash

__all__ = [
    "KEY_NAMESPACE",
    "MAX_ROUTED_KEY_LENGTH",
    "NODE_RECORD_NAMESPACE",
    "RouteSide",
    "key_bytes",
    "node_record_key",
    "route_key",
]

#: The prefix of every namespaced route id that DNDM hashes into a DHT key.
KEY_NAMESPACE: Final = "/dndm/v1"
#: The record namespace of DNDM value records (``/dndm/node/<peer id>``), checked by
#: :class:`dht.records.DndmValidator`.
NODE_RECORD_NAMESPACE: Final = "dndm"


class RouteSide(Enum):
    """Which side of a route a provider record stands for."""

    INTENT = "intent"
    INTEREST = "interest"

    @property
    def other(self) -> RouteSide:
        """The side that looks this side up."""
        return RouteSide.INTEREST if self is RouteSide.INTENT else RouteSide.INTENT


def route_key(route_id: str, side: RouteSide) -> str:
    """The DHT key (a CIDv1 string) that ``side`` of the route ``route_id`` provides."""
    if not route_id:
        raise ValueError("a route id is not empty")
    name = f"{KEY_NAMESPACE}/{side.value}/{route_id}".encode()
    digest = multihash.encode(hashlib.sha256(name).digest(), "sha2-256")
    return str(cid.make_cid(1, "raw", digest).encode("base32").decode())


def key_bytes(key: str) -> bytes:
    """The binary multihash of a key made by :func:`route_key`: what goes on the wire."""
    parsed = cid.from_string(key)
    return bytes(parsed.multihash)


#: Longest DHT key py-libp2p servers route: they refuse a FIND_NODE whose key is longer than 50
#: bytes unless it parses as a multihash, so a value record under a longer key is stored on
#: the writer alone and never found (shown in tests/discovery/test_discovery_dht.py).
MAX_ROUTED_KEY_LENGTH: Final = 50


def node_record_key(peer_id: str) -> str:
    """The DHT key of a node's signed :class:`~protocols.v1.dht_pb2.NodeRecord`.

    ``/dndm/node/`` and 32 base32 characters of the SHA-256 of the peer id: 43 bytes, short
    enough for py-libp2p to route (see :data:`MAX_ROUTED_KEY_LENGTH`); the record inside names
    the peer id in full, and the validator checks that it hashes to the key.
    """
    digest = base64.b32encode(hashlib.sha256(peer_id.encode()).digest()).decode().lower()
    return f"/{NODE_RECORD_NAMESPACE}/node/{digest[:32]}"
