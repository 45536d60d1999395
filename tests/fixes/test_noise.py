"""protocols.libp2p_fixes.noise: a cancelled write on a py-libp2p Noise session breaks it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
from libp2p.abc import ISecureConn
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise.transport import Transport
from noise.exceptions import NoiseInvalidMessage

from dndm_p2p.host.identity import generate_identity
from protocols.libp2p_fixes.noise import WholeWriteNoise


@asynccontextmanager
async def session_pair(*, stock: bool) -> AsyncIterator[tuple[ISecureConn, ISecureConn]]:
    """Two Noise sessions over a local socket pair (py-libp2p's TCP stream on each end)."""
    kind = Transport if stock else WholeWriteNoise
    left_key, right_key = generate_identity(), generate_identity()
    left = kind(left_key, new_x25519_key_pair().private_key)
    right = kind(right_key, new_x25519_key_pair().private_key)
    a, b = trio.socket.socketpair()
    left_raw = RawConnection(TrioTCPStream(trio.SocketStream(a)), initiator=True)
    right_raw = RawConnection(TrioTCPStream(trio.SocketStream(b)), initiator=False)
    sessions: dict[str, ISecureConn] = {}

    async def outbound() -> None:
        right_id = ID.from_pubkey(right_key.public_key)
        sessions["left"] = await left.secure_outbound(left_raw, right_id)

    async def inbound() -> None:
        sessions["right"] = await right.secure_inbound(right_raw)

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbound)
                nursery.start_soon(inbound)
        yield sessions["left"], sessions["right"]
    finally:
        await left_raw.close()
        await right_raw.close()


async def write_cancelled(session: ISecureConn, data: bytes) -> None:
    """Write ``data`` from a task whose cancellation is already pending (as a cancelled reader's
    window update is)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await session.write(data)


async def test_stock_noise_session_breaks_after_a_cancelled_write() -> None:
    async with session_pair(stock=True) as (left, right):
        await write_cancelled(left, b"lost")
        await left.write(b"next")
        # The nonce of "lost" was used up, so "next" was encrypted with one the peer does not
        # expect: the session, and the connection above it, is dead.
        with trio.fail_after(10), pytest.raises(NoiseInvalidMessage, match="authentication"):
            await right.read()


async def test_fixed_noise_session_survives_cancelled_writes() -> None:
    async with session_pair(stock=False) as (left, right):
        received = b""
        for i in range(50):
            await write_cancelled(left, b"lost")
            await left.write(b"%d;" % i)
        expected = b"".join(b"%d;" % i for i in range(50))
        with trio.fail_after(10):
            while len(received.replace(b"lost", b"")) < len(expected):
                received += await right.read()
        assert received.replace(b"lost", b"") == expected


async def test_fixed_noise_session_sends_a_started_message_whole_despite_cancellation() -> None:
    """A large message (several Noise chunks) that started leaving is finished when its task is
    cancelled meanwhile; the next message still decrypts."""
    async with session_pair(stock=False) as (left, right):
        big = bytes(range(256)) * 1024  # 256 KiB: four Noise messages, more than a socket buffer
        received = bytearray()
        async with trio.open_nursery() as nursery:

            async def write_then_cancelled() -> None:
                with trio.CancelScope() as scope:
                    nursery.start_soon(cancel_soon, scope)
                    await left.write(big)

            async def cancel_soon(scope: trio.CancelScope) -> None:
                await trio.lowlevel.checkpoint()
                scope.cancel()

            nursery.start_soon(write_then_cancelled)
            with trio.fail_after(10):
                while len(received) < len(big):
                    received += await right.read()
        assert bytes(received) == big
        await left.write(b"after")
        with trio.fail_after(10):
            assert await right.read() == b"after"
