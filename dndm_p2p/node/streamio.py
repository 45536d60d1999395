"""The byte stream of a data link: a py-libp2p stream read and written straight at its muxer.

A data link's reader spends most of its life parked in ``stream.read()``, and it goes back
there right after every frame it delivers, while the subscriber it just woke (and, in a
request/reply exchange, the publisher's writer behind it) is doing the work that matters.  On
one core those tasks share the CPU, so whatever the reader does to park again delays them.

py-libp2p 0.8.1's ``NetStream.read(n)`` takes a lock (one trip through the scheduler even when
nobody holds it) before it calls the muxer, and yamux's ``read(n)`` for ``n >= 0`` takes another
one; ``read(-1)`` on the yamux stream returns whatever is buffered and parks on the stream's
event without either.  Writing is the same story: ``NetStream.write`` takes the same lock
before it calls the muxer, one more scheduler round before a reply leaves.

:class:`MuxedIO` reads and writes the yamux stream directly (the window updates yamux sends
per read are unchanged, and so is everything the muxer checks), and maps the muxer's errors to
the ones ``NetStream`` would raise, so :class:`~protocols.framing.FrameReader` and
:class:`~protocols.framing.FrameWriter` see the same stream.  Streams of any other muxer (or
anything that is not a ``NetStream``) are used as they are.  Closing and resetting still go
through the ``NetStream``, which keeps its bookkeeping.

Cancelling a read or a write here never harms the connection: the host's Noise sessions send
each encrypted message whole (:mod:`protocols.libp2p_fixes.noise`), so a window update or data
frame cut short by a cancellation is either not sent or sent entirely.  A read is cancellable
only while it waits for data, so a cancelled read loses neither data nor window credit.  A
cancelled write may leave part of *our* frame on this stream; the stream is then reset, not
closed (:func:`~dndm_p2p.node.best_effort.end_stream_quietly`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamReset
from libp2p.stream_muxer.exceptions import MuxedStreamClosed, MuxedStreamEOF, MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from protocols.framing import ByteStream

__all__ = ["MuxedIO", "data_stream"]


class MuxedIO:
    """Reads and writes a stream's yamux stream directly (see the module docstring)."""

    __slots__ = ("_muxed", "_read", "_write", "stream")

    def __init__(self, stream: INetStream, muxed: YamuxStream) -> None:
        self.stream = stream
        self._muxed = muxed
        self._read: Callable[[int], Awaitable[bytes]] = muxed.read
        self._write: Callable[[bytes], Awaitable[None]] = muxed.write

    async def read(self, n: int | None = None) -> bytes:
        """Return the bytes buffered (at least one, waiting for them), or raise at the end.

        ``n`` is ignored: yamux bounds what can be buffered by its receive window.  A
        cancellation lands only while nothing is buffered: once there is data, it is taken and
        returned, and its window update sent, whatever happens outside (yamux alone would drop
        the data it took, and the credit it owed, when cancelled while sending that update).
        """
        await self._wait_readable()
        try:
            with trio.CancelScope(shield=True):
                return await self._read(-1)
        except MuxedStreamEOF as exc:
            raise StreamEOF() from exc
        except MuxedStreamError as exc:
            raise StreamReset() from exc

    async def _wait_readable(self) -> None:
        """Wait (cancellably, changing nothing) until a yamux read would not wait: data is
        buffered, or the stream or its connection has ended."""
        muxed = self._muxed
        conn = muxed.conn
        stream_id = muxed.stream_id
        while True:
            buffer = conn.stream_buffers.get(stream_id)
            if (
                buffer is None
                or len(buffer) > 0
                or muxed.recv_closed
                or muxed.reset_received
                or conn.event_shutting_down.is_set()
            ):
                return
            event = conn.stream_events.get(stream_id)
            if event is None:
                return
            await event.wait()
            if conn.stream_events.get(stream_id) is event:
                conn.stream_events[stream_id] = trio.Event()  # consumed, as yamux's read does

    async def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        try:
            await self._write(data)
        except MuxedStreamClosed as exc:
            raise StreamClosed() from exc
        except MuxedStreamError as exc:
            raise StreamReset() from exc


def data_stream(stream: INetStream) -> ByteStream:
    """What a data link's :class:`~protocols.framing.FrameReader` and ``FrameWriter`` use."""
    muxed = getattr(stream, "muxed_stream", None)
    if isinstance(muxed, YamuxStream):
        return MuxedIO(stream, muxed)
    return stream
