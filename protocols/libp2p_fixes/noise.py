"""A Noise transport whose secure sessions never lose a message to a cancellation.

Noise transport messages carry an implicit nonce: each message is encrypted with the next one,
and the peer decrypts with the next one it expects.  py-libp2p's ``write_msg`` encrypts first
and then awaits the socket write, so a cancellation delivered at that await (a lock, the socket's
own checkpoint) consumes a nonce without sending anything; the peer then fails to authenticate
the next message and the whole connection, with every stream on it, is torn down.  yamux writes
from whatever task happens to read or write a stream (a read sends a window update), so any
cancelled stream reader or writer can do that.

:class:`WholeWriteNoise` is a drop-in security transport for a host's ``sec_opt``: the sessions
it makes write each message whole or not at all.  A cancellation that arrives before a message
is encrypted cancels the write; once encrypted, the message is sent whatever happens outside,
within ``stall_timeout`` seconds.  A send stalled longer than that (the peer has not read its
socket for that long) closes the connection and raises ``ConnectionClosedError``: the stream
would be out of step otherwise.  Only hosts built with this transport are affected.  The
defect is listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

from typing import cast

import trio
from libp2p.abc import IRawConnection, ISecureConn
from libp2p.crypto.keys import KeyPair, PrivateKey
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.peer.id import ID
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.security.noise.transport import Transport
from libp2p.security.secure_session import SecureSession

__all__ = ["DEFAULT_STALL_TIMEOUT", "WholeMessageWriter", "WholeWriteNoise", "writes_whole"]

#: Seconds a Noise message, once encrypted, may take to leave before the connection is closed.
DEFAULT_STALL_TIMEOUT = 30.0


class WholeMessageWriter(NoiseTransportReadWriter):
    """A Noise transport reader/writer whose :meth:`write_msg` is atomic under cancellation.

    Invariant: every nonce used for encryption belongs to a message that was handed to the
    socket completely, or the connection is closed.  Writers are served one at a time, in
    order, so messages leave in the order of their nonces.
    """

    def __init__(
        self, stock: NoiseTransportReadWriter, stall_timeout: float = DEFAULT_STALL_TIMEOUT
    ) -> None:
        """Take over ``stock``'s connection and cipher state (``stock`` must not be used again)."""
        super().__init__(cast(IRawConnection, stock.conn), stock.noise_state)
        self.stall_timeout = stall_timeout
        self._write_lock = trio.Lock()

    async def write_msg(self, msg: bytes, prefix_encoded: bool = False) -> None:
        """Encrypt and send ``msg`` (chunked as py-libp2p does), entirely or not at all.

        Cancellable until the writer's turn comes (nothing is encrypted before that); from then
        on the message is sent, shielded from outside cancellation.

        :raises ConnectionClosedError: the send took longer than :attr:`stall_timeout`; the
            connection is closed.
        """
        try:
            self._write_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._write_lock.acquire()
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.stall_timeout
                await super().write_msg(msg, prefix_encoded)
            if scope.cancelled_caught:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.close()
                raise ConnectionClosedError(
                    f"a Noise message of {len(msg)} bytes could not be sent within "
                    f"{self.stall_timeout:g} s; connection closed",
                    transport="noise",
                )
        finally:
            self._write_lock.release()


def writes_whole(session: ISecureConn, stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> ISecureConn:
    """Make ``session`` (a Noise secure session) write every message whole; return it.

    Must be called before the session carries any transport message.  Sessions of another
    kind are returned unchanged.
    """
    if isinstance(session, SecureSession) and type(session.conn) is NoiseTransportReadWriter:
        session.conn = WholeMessageWriter(session.conn, stall_timeout)
    return session


class WholeWriteNoise(Transport):
    """py-libp2p's Noise transport, whose sessions write each message whole (module doc)."""

    def __init__(
        self,
        libp2p_keypair: KeyPair,
        noise_privkey: PrivateKey,
        *,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        super().__init__(libp2p_keypair, noise_privkey)
        self.stall_timeout = stall_timeout

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        """Noise's inbound handshake; the session writes whole messages."""
        return writes_whole(await super().secure_inbound(conn), self.stall_timeout)

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        """Noise's outbound handshake; the session writes whole messages."""
        return writes_whole(await super().secure_outbound(conn, peer_id), self.stall_timeout)
