"""The byte stream a data link reads: a py-libp2p stream read straight from its muxer.

A data link's reader spends most of its life parked in ``stream.read()``, and it goes back
there right after every frame it delivers, while the subscriber it just woke (and, in a
request/reply exchange, the publisher's writer behind it) is doing the work that matters.  On
one core those tasks share the CPU, so whatever the reader does to park again delays them.

py-libp2p 0.8.1's ``NetStream.read(n)`` takes a lock (one trip through the scheduler even when
nobody holds it) before it calls the muxer, and yamux's ``read(n)`` for ``n >= 0`` takes another
one; ``read(-1)`` on the yamux stream returns whatever is buffered and parks on the stream's
event without either.  :class:`MuxedReader` reads that way (the window update yamux sends per
read is unchanged), and maps the muxer's errors to the ones ``NetStream`` would raise, so
:class:`~protocols.framing.FrameReader` sees the same stream.  Streams of any other muxer
(or anything that is not a ``NetStream``) are read through their own ``read``.

Writes are not affected: :class:`~protocols.framing.FrameWriter` writes to the stream itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamEOF, StreamReset
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamError
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from protocols.framing import ByteStream

__all__ = ["MuxedReader", "reader_stream"]


class MuxedReader:
    """Reads a stream's yamux stream directly, whatever is buffered at a time (see above)."""

    __slots__ = ("_read", "stream")

    def __init__(self, stream: INetStream, muxed: YamuxStream) -> None:
        self.stream = stream
        self._read: Callable[[int], Awaitable[bytes]] = muxed.read

    async def read(self, n: int | None = None) -> bytes:
        """Return the bytes buffered (at least one, waiting for them), or raise at the end.

        ``n`` is ignored: yamux bounds what can be buffered by its receive window.
        """
        try:
            return await self._read(-1)
        except MuxedStreamEOF as exc:
            raise StreamEOF() from exc
        except MuxedStreamError as exc:
            raise StreamReset() from exc

    async def write(self, data: bytes) -> None:
        """Write through the stream itself."""
        await self.stream.write(data)


def reader_stream(stream: INetStream) -> ByteStream:
    """The stream a data link's :class:`~protocols.framing.FrameReader` should read."""
    muxed = getattr(stream, "muxed_stream", None)
    if isinstance(muxed, YamuxStream):
        return MuxedReader(stream, muxed)
    return stream
