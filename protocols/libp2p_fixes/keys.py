"""Ed25519 private keys in the libp2p ``PrivateKey`` protobuf form every libp2p reads.

See the index in :mod:`protocols.libp2p_fixes` for the py-libp2p defect this covers.
"""

from __future__ import annotations

from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.pb import crypto_pb2

__all__ = ["decode_ed25519_private_key", "encode_ed25519_private_key"]

_SEED_SIZE = 32
_PUBLIC_KEY_SIZE = 32


def encode_ed25519_private_key(private_key: Ed25519PrivateKey) -> bytes:
    """Serialize ``private_key`` as a libp2p ``PrivateKey`` protobuf whose ``Data`` is the
    64-byte ``seed || public key`` form (as go-, rust- and js-libp2p write it)."""
    seed = private_key.to_bytes()
    public = private_key.get_public_key().to_bytes()
    message = crypto_pb2.PrivateKey(key_type=crypto_pb2.KeyType.Ed25519, data=seed + public)
    return message.SerializeToString()


def decode_ed25519_private_key(data: bytes) -> Ed25519PrivateKey:
    """Build an Ed25519 private key from the ``Data`` field of a libp2p ``PrivateKey`` protobuf.

    Accepts the 32-byte seed (py-libp2p), the 64-byte ``seed || public key`` (the standard
    form) and the 96-byte form with the public key repeated (old go-libp2p).  Where a public
    key is present it must match the seed.

    :raises ValueError: the data has another length, or its public key does not match the seed.
    """
    size = len(data)
    if size not in (_SEED_SIZE, _SEED_SIZE + _PUBLIC_KEY_SIZE, _SEED_SIZE + 2 * _PUBLIC_KEY_SIZE):
        raise ValueError(f"an Ed25519 private key has 32, 64 or 96 bytes of data, not {size}")
    key = Ed25519PrivateKey.from_bytes(data[:_SEED_SIZE])
    derived = key.get_public_key().to_bytes()
    for start in range(_SEED_SIZE, size, _PUBLIC_KEY_SIZE):
        if data[start : start + _PUBLIC_KEY_SIZE] != derived:
            raise ValueError("the public key stored with the Ed25519 seed does not match it")
    return key
