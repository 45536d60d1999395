"""Each workaround in protocols.libp2p_fixes.keys: first the py-libp2p 0.8.1 bug itself, then
the fix.

When one of the "bug" tests fails after a py-libp2p upgrade, the bug is gone: delete the test and
the workaround together.
"""

from __future__ import annotations

import base64

import pytest
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.ed25519 import create_new_key_pair as new_ed25519_key_pair
from libp2p.crypto.pb import crypto_pb2
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from protocols.libp2p_fixes.keys import decode_ed25519_private_key, encode_ed25519_private_key

# A key file written by js-libp2p (`peer-id --type=ed25519`), as published with its peer id in
# the js-libp2p WebRTC examples: the standard 64-byte ``seed || public key`` form.
JS_LIBP2P_KEY = base64.b64decode(
    "CAESQAG6Ld7ev6nnD0FKPs033/j0eQpjWilhxnzJ2CCTqT0+LfcWoI2Vr+zdc1vwk7XAVdyoCa2nwUR3RJebPWsF1/I="
)
JS_LIBP2P_PEER_ID = "12D3KooWCuo3MdXfMgaqpLC5Houi1TRoFqgK9aoxok4NK5udMu8m"


# --- Ed25519 private keys: py-libp2p's 32-byte form is not interoperable ----------------------


def test_bug_py_libp2p_serializes_an_ed25519_key_as_its_32_byte_seed() -> None:
    key_pair = new_ed25519_key_pair()
    message = crypto_pb2.PrivateKey.FromString(key_pair.private_key.serialize())
    assert message.key_type == crypto_pb2.KeyType.Ed25519
    assert len(message.data) == 32  # go-, rust- and js-libp2p write 64; go-libp2p requires it


def test_bug_py_libp2p_cannot_read_a_key_file_written_by_another_libp2p() -> None:
    assert crypto_pb2.PrivateKey.FromString(JS_LIBP2P_KEY).key_type == crypto_pb2.KeyType.Ed25519
    with pytest.raises(ValueError, match="32 bytes"):
        deserialize_private_key(JS_LIBP2P_KEY)


def test_fix_reads_a_js_libp2p_key_file_and_finds_its_published_peer_id() -> None:
    message = crypto_pb2.PrivateKey.FromString(JS_LIBP2P_KEY)
    key = decode_ed25519_private_key(message.data)
    assert str(ID.from_pubkey(key.get_public_key())) == JS_LIBP2P_PEER_ID
    assert encode_ed25519_private_key(key) == JS_LIBP2P_KEY  # and writes exactly those bytes


def test_fix_writes_the_64_byte_form_and_reads_the_32_64_and_96_byte_forms() -> None:
    key = Ed25519PrivateKey.new()
    seed, public = key.to_bytes(), key.get_public_key().to_bytes()
    data = crypto_pb2.PrivateKey.FromString(encode_ed25519_private_key(key)).data
    assert data == seed + public
    for form in (seed, seed + public, seed + public + public):  # py-libp2p, standard, old go
        assert decode_ed25519_private_key(form) == key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "32, 64 or 96 bytes"),
        (bytes(33), "32, 64 or 96 bytes"),
        (bytes(32) + bytes(32), "does not match"),
    ],
)
def test_fix_rejects_malformed_ed25519_key_data(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_ed25519_private_key(data)


def test_fix_rejects_a_repeated_public_key_that_differs() -> None:
    key = Ed25519PrivateKey.new()
    seed, public = key.to_bytes(), key.get_public_key().to_bytes()
    with pytest.raises(ValueError, match="does not match"):
        decode_ed25519_private_key(seed + public + bytes(32))
