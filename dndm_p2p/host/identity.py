"""A node's identity: an Ed25519 key pair, kept in a key file so the peer id survives restarts.

The key file holds the libp2p ``PrivateKey`` protobuf (``Type = Ed25519``, ``Data = seed ||
public key``, 64 bytes of data, 68 bytes in all): the format go-libp2p, rust-libp2p and
js-libp2p store and read (a Kubo ``PrivKey`` is the same bytes, base64-encoded).  Files holding
only the 32-byte seed, as py-libp2p's own ``save_identity``/``FileSystemKeyStore`` write them,
are read as well (see :mod:`protocols.libp2p_fixes.keys`).

A key file must be a regular file readable and writable by its owner only (mode ``0600``);
:func:`load_identity` refuses anything else.  :func:`save_identity` writes a new file atomically
with that mode and never replaces an existing key unless told to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from google.protobuf.message import DecodeError
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.ed25519 import create_new_key_pair as _new_ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.pb import crypto_pb2
from libp2p.peer.id import ID

from dndm_p2p.errors import ConfigError
from dndm_p2p.privatefiles import write_private_file
from protocols.libp2p_fixes.keys import decode_ed25519_private_key, encode_ed25519_private_key

__all__ = [
    "decode_identity",
    "encode_identity",
    "generate_identity",
    "load_identity",
    "load_or_create_identity",
    "peer_id_of",
    "save_identity",
]

#: A key file larger than this is not a key file (an RSA-4096 key is about 2.4 KB).
MAX_KEY_FILE_SIZE = 16 * 1024

_CHECK_MODE = os.name == "posix"
# Opening a FIFO for reading would block until a writer appears; with this it fails the
# regular-file check instead.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def generate_identity() -> KeyPair:
    """Generate a new random Ed25519 identity."""
    return _new_ed25519_key_pair()


def peer_id_of(key_pair: KeyPair) -> ID:
    """The peer id of ``key_pair`` (``12D3KooW...`` for an Ed25519 key)."""
    return ID.from_pubkey(key_pair.public_key)


def encode_identity(key_pair: KeyPair) -> bytes:
    """The bytes of a key file for ``key_pair`` (the libp2p ``PrivateKey`` protobuf).

    :raises ConfigError: the key is not an Ed25519 key.
    """
    private_key = key_pair.private_key
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ConfigError(
            f"dndm-p2p identities are Ed25519 keys, not {private_key.get_type().name}"
        )
    if private_key.get_public_key() != key_pair.public_key:
        raise ConfigError("the key pair's public key does not belong to its private key")
    return encode_ed25519_private_key(private_key)


def decode_identity(data: bytes, *, source: str = "the key data") -> KeyPair:
    """Decode the bytes of a key file; ``source`` names them in error messages.

    :raises ConfigError: empty, not a libp2p ``PrivateKey`` protobuf, not an Ed25519 key, or a
        key whose bytes are inconsistent.
    """
    if not data:
        raise ConfigError(f"{source} is empty; it should hold a libp2p Ed25519 private key")
    try:
        message = crypto_pb2.PrivateKey.FromString(data)
    except DecodeError as exc:
        raise ConfigError(
            f"{source} is not a libp2p private key (corrupt, or another format): {exc}"
        ) from exc
    if message.key_type != crypto_pb2.KeyType.Ed25519:
        raise ConfigError(
            f"{source} holds a {_key_type_name(message.key_type)} key; "
            "dndm-p2p identities must be Ed25519"
        )
    try:
        private_key = decode_ed25519_private_key(message.data)
    except ValueError as exc:
        raise ConfigError(f"{source} holds a corrupt Ed25519 key: {exc}") from exc
    return KeyPair(private_key, private_key.get_public_key())


def load_identity(path: str | os.PathLike[str]) -> KeyPair:
    """Load the identity stored in the key file at ``path``.

    :raises ConfigError: the file is missing or unreadable, is not a regular file, can be read
        or written by group or others (the message gives the ``chmod`` that fixes it), or does
        not hold an Ed25519 key (see :func:`decode_identity`).
    """
    file = Path(path)
    try:
        fd = os.open(file, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        raise ConfigError(f"identity key file {file} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot open identity key file {file}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigError(f"identity key file {file} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if _CHECK_MODE and info.st_mode & 0o077:
            raise ConfigError(
                f"identity key file {file} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); a private key must be readable by "
                f"its owner only: run `chmod 600 {file}`"
            )
        data = handle.read(MAX_KEY_FILE_SIZE + 1)
    if len(data) > MAX_KEY_FILE_SIZE:
        raise ConfigError(
            f"identity key file {file} is larger than {MAX_KEY_FILE_SIZE} bytes; "
            "it is not a libp2p private key"
        )
    return decode_identity(data, source=f"identity key file {file}")


def save_identity(
    key_pair: KeyPair, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write ``key_pair`` to the key file ``path``, atomically, with mode ``0600``.

    Missing parent directories are created (mode ``0700``).  The key is written to a temporary
    file in the same directory, flushed to disk, and then moved into place, so a crash never
    leaves a partial key file.

    :param overwrite: replace an existing file.  Without it an existing file is never touched
        (replacing a node's key changes its peer id).
    :raises ConfigError: the file exists and ``overwrite`` is false, the key is not Ed25519, or
        the file cannot be written.
    """
    file = Path(path)
    data = encode_identity(key_pair)
    try:
        write_private_file(
            file, data, place=lambda temp, dest: _move_into_place(temp, dest, overwrite=overwrite)
        )
    except OSError as exc:
        raise ConfigError(f"cannot write identity key file {file}: {exc}") from exc


def load_or_create_identity(path: str | os.PathLike[str]) -> KeyPair:
    """Load the identity at ``path``; if there is no file there, create one and save it.

    An existing file that cannot be loaded (corrupt, wrong permissions, not Ed25519) raises
    :class:`ConfigError`; it is never replaced.  If another process creates the file at the
    same moment, its key is loaded and used, so both agree on one identity.
    """
    file = Path(path)
    if os.path.lexists(file):
        return load_identity(file)
    key_pair = generate_identity()
    try:
        save_identity(key_pair, file)
    except ConfigError:
        if not os.path.lexists(file):
            raise
        return load_identity(file)  # created by someone else meanwhile: theirs wins
    return key_pair


def _move_into_place(temp: Path, file: Path, *, overwrite: bool) -> None:
    """Rename ``temp`` to ``file``; without ``overwrite``, fail if ``file`` exists."""
    if overwrite:
        os.replace(temp, file)
        return
    try:
        os.link(temp, file)  # atomic, and fails if ``file`` exists: no check-then-write race
    except FileExistsError:
        raise ConfigError(
            f"identity key file {file} already exists; refusing to replace it (that would "
            "change the node's peer id): pass overwrite=True to replace it"
        ) from None
    except OSError:
        # The file system has no hard links: check, then rename (racy, but no worse).
        if os.path.lexists(file):
            raise ConfigError(
                f"identity key file {file} already exists; refusing to replace it (that "
                "would change the node's peer id): pass overwrite=True to replace it"
            ) from None
        os.replace(temp, file)

def _key_type_name(value: int) -> str:
    """The name of a libp2p key type number (``RSA``, ``Secp256k1``...)."""
    try:
        return crypto_pb2.KeyType.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return f"unknown (type {value})"
