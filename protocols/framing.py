"""Length-prefixed protobuf frames over a byte stream (see ``docs/wire-protocol.md``).

A frame is an unsigned LEB128 varint length ``N`` (at most 5 bytes) followed by ``N``
bytes of body, normally one serialized ``ControlFrame`` or ``DataFrame``.

* :func:`encode_frame` / :func:`encode_message` build frames;
* :class:`FrameReader` splits a :class:`ByteStream` into frame bodies, checking each
  declared length against its limit *before* reading or allocating the body;
* :class:`FrameWriter` writes batches of frames, one stream write per batch;
* :func:`parse_message` / :func:`read_message` turn bodies into protobuf messages.

Stream failures become :class:`~protocols.errors.ConnectionLost`; protocol violations by
the peer become :class:`~protocols.errors.FrameTooLarge` or
:class:`~protocols.errors.MalformedFrame` (both :class:`~protocols.errors.ProtocolError`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Final, Protocol, TypeVar

import trio
from google.protobuf.message import DecodeError, Message

from protocols.errors import ConnectionLost, DndmError, FrameTooLarge, MalformedFrame
from protocols.ids import MAX_FRAME_SIZE

__all__ = [
    "DEFAULT_READ_SIZE",
    "MAX_PREFIX_LENGTH",
    "ByteStream",
    "FrameReader",
    "FrameWriter",
    "encode_frame",
    "encode_message",
    "parse_message",
    "read_message",
]

M = TypeVar("M", bound=Message)

MAX_PREFIX_LENGTH: Final[int] = 5
"""Longest accepted length prefix in bytes (enough for any 32-bit length)."""

DEFAULT_READ_SIZE: Final[int] = 65536
"""Bytes :class:`FrameReader` asks the stream for per read call."""

_MAX_VARINT: Final[int] = (1 << (7 * MAX_PREFIX_LENGTH)) - 1
_ONE_BYTE_PREFIX: Final[tuple[bytes, ...]] = tuple(bytes((n,)) for n in range(0x80))


class ByteStream(Protocol):
    """The byte stream the framing layer needs; py-libp2p's ``NetStream`` is one.

    ``read`` may also signal the end of the stream by raising :class:`EOFError`
    (libp2p's ``StreamEOF`` is one); libp2p stream errors and trio's
    ``BrokenResourceError`` / ``ClosedResourceError`` are reported as
    :class:`~protocols.errors.ConnectionLost`.
    """

    async def read(self, n: int | None = None) -> bytes:
        """Return up to ``n`` bytes (at least one), or ``b""`` at the end of the stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        ...


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the stream broke"; mapped to :class:`ConnectionLost`.

    Only evaluated when an exception is propagating, so libp2p (slow to import) is looked
    up only if it is already loaded: a libp2p error cannot occur otherwise. The end of
    stream is not in this list: ``StreamEOF`` is an :class:`EOFError` and handled first.
    """
    errors: tuple[type[BaseException], ...] = (
        trio.BrokenResourceError,
        trio.ClosedResourceError,
        ConnectionError,
    )
    if "libp2p" in sys.modules:
        from libp2p.io.exceptions import IOException
        from libp2p.network.stream.exceptions import StreamError

        errors = (*errors, StreamError, IOException)
    return errors


async def _read_chunk(stream: ByteStream, n: int) -> bytes:
    """Read up to ``n`` bytes; ``b""`` at the end of the stream; ConnectionLost if broken."""
    try:
        chunk = await stream.read(n)
    except EOFError:  # libp2p's StreamEOF (checked before its base class StreamError)
        return b""
    except DndmError:
        raise  # already ours (Unavailable and ConnectionLost are ConnectionErrors too)
    except _connection_errors() as exc:
        raise ConnectionLost(f"stream broke while reading: {exc!r}") from exc
    return chunk if type(chunk) is bytes else bytes(chunk)


def _prefix(n: int) -> bytes:
    """The varint length prefix for a body of ``n`` bytes."""
    if n < 0x80:
        return _ONE_BYTE_PREFIX[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n > _MAX_VARINT:
        raise FrameTooLarge(
            f"frame body of {n} bytes does not fit a 5-byte length prefix",
            size=n,
            limit=_MAX_VARINT,
        )
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_frame(body: bytes) -> bytes:
    """Return ``body`` with its varint length prefix: one complete frame."""
    n = len(body)
    if n < 0x80:
        return _ONE_BYTE_PREFIX[n] + body
    return _prefix(n) + body


def encode_message(msg: Message) -> bytes:
    """Serialize ``msg`` and return it as one complete frame (prefix + body)."""
    return encode_frame(msg.SerializeToString())


_BODY_ONEOF: dict[type[Message], bool] = {}


def _has_body_oneof(message_type: type[Message]) -> bool:
    """Whether ``message_type`` has a oneof named ``body`` (cached per type)."""
    known = _BODY_ONEOF.get(message_type)
    if known is None:
        known = "body" in message_type.DESCRIPTOR.oneofs_by_name
        _BODY_ONEOF[message_type] = known
    return known


def parse_message(body: bytes, message_type: type[M]) -> M:
    """Parse a frame body into a new ``message_type``.

    Raises :class:`MalformedFrame` if the body is not a valid serialized
    ``message_type``, or if the type has a oneof named ``body`` (``ControlFrame``,
    ``DataFrame``) and no member of it is set.
    """
    msg = message_type()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise MalformedFrame(
            f"frame of {len(body)} bytes is not a valid {message_type.DESCRIPTOR.full_name}: {exc}"
        ) from exc
    has_body = _BODY_ONEOF.get(message_type)
    if has_body is None:
        has_body = _has_body_oneof(message_type)
    if has_body and msg.WhichOneof("body") is None:
        raise MalformedFrame(f"{message_type.DESCRIPTOR.full_name} has no body")
    return msg


async def read_message(reader: FrameReader, message_type: type[M]) -> M | None:
    """Read the next frame from ``reader`` and parse it as ``message_type``.

    Returns ``None`` on a clean end of stream between frames. Raises the errors of
    :meth:`FrameReader.read_frame` and of :func:`parse_message`.
    """
    body = await reader.read_frame()
    if body is None:
        return None
    return parse_message(body, message_type)


class FrameReader:
    """Reads frame bodies from a :class:`ByteStream`.

    The reader asks the stream for ``read_size`` bytes at a time and keeps what it gets
    in a buffer, so a burst of small frames costs one read call; :meth:`read_frames`
    returns such a burst in one go. A large body is collected piece by piece and joined
    once, so the cost stays linear however the stream splits the data.

    A declared length above :attr:`max_size` raises :class:`FrameTooLarge` as soon as the
    prefix is decoded, before any of the body is read or allocated. Protocol errors are
    sticky: once raised, later calls raise them again (close the stream).
    Cancelling a read loses no data. One task at a time may read (a second concurrent
    reader gets :class:`trio.BusyResourceError`).
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_have",
        "_max_size",
        "_need",
        "_parts",
        "_pos",
        "_read_size",
        "_reading",
        "_stream",
    )

    def __init__(
        self,
        stream: ByteStream,
        max_size: int = MAX_FRAME_SIZE,
        *,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> None:
        """Read frames of at most ``max_size`` body bytes from ``stream``."""
        if read_size < 1:
            raise ValueError(f"read_size must be positive, not {read_size}")
        self._stream = stream
        self._max_size = 0
        self.max_size = max_size
        self._read_size = read_size
        self._buf = b""  # received bytes not yet consumed start at _pos
        self._pos = 0
        self._need = -1  # body length of the frame being collected, -1 = none
        self._parts: list[bytes] = []  # collected pieces of that body
        self._have = 0  # bytes in _parts
        self._eof = False
        self._reading = False

    @property
    def max_size(self) -> int:
        """Largest accepted body length; may be lowered (e.g. to the peer's limit) at any time."""
        return self._max_size

    @max_size.setter
    def max_size(self, value: int) -> None:
        if not 0 <= value <= _MAX_VARINT:
            raise ValueError(f"max_size must be between 0 and {_MAX_VARINT}, not {value}")
        self._max_size = value

    @property
    def buffered(self) -> int:
        """Number of received bytes not yet returned as frames."""
        return len(self._buf) - self._pos + self._have

    @property
    def at_eof(self) -> bool:
        """True once the stream has ended (buffered frames may still be pending)."""
        return self._eof

    async def read_frame(self) -> bytes | None:
        """Return the next frame body, waiting for it if needed.

        Returns ``None`` on a clean end of stream (between frames). Raises
        :class:`FrameTooLarge` for a declared length above :attr:`max_size`,
        :class:`MalformedFrame` for a prefix longer than 5 bytes or a stream that ends
        inside a frame, and :class:`ConnectionLost` when the stream breaks.
        """
        if self._reading:
            raise trio.BusyResourceError("another task is already reading from this FrameReader")
        self._reading = True
        try:
            return await self._read_frame()
        finally:
            self._reading = False

    async def read_frames(self, max_frames: int = 1024) -> list[bytes]:
        """Return the next frames: at least one (waiting for it), at most ``max_frames``.

        After the first frame, only frames already complete in the buffer are added, so
        a burst that arrived in one chunk comes back in one call. Returns ``[]`` on a
        clean end of stream. Errors as :meth:`read_frame`; an error after the first frame
        is held back and raised by the next call, so no good frame is lost.
        """
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, not {max_frames}")
        first = await self.read_frame()
        if first is None:
            return []
        frames = [first]
        if self._pos < len(self._buf):
            self._take_buffered(frames, max_frames)
        return frames

    def buffered_frames(self, max_frames: int = 1024) -> list[bytes]:
        """Return the frames already complete in the buffer, without waiting (maybe ``[]``).

        Raises a protocol error only if it concerns the first of them; otherwise the
        frames before it are returned and the error surfaces on the next call.
        """
        if self._reading:
            raise trio.BusyResourceError("another task is already reading from this FrameReader")
        frames: list[bytes] = []
        if self._need < 0:
            first = self._parse_buffered()
            if first is not None:
                frames.append(first)
                self._take_buffered(frames, max_frames)
        return frames

    def _take_buffered(self, frames: list[bytes], max_frames: int) -> None:
        """Append complete buffered frames to ``frames`` (up to ``max_frames`` in total)."""
        try:
            while len(frames) < max_frames and self._need < 0:
                body = self._parse_buffered()
                if body is None:
                    break
                frames.append(body)
        except (FrameTooLarge, MalformedFrame):
            pass  # the buffer is unchanged: the next call raises it again

    def _parse_buffered(self) -> bytes | None:
        """Take the next frame from the buffer if it is complete there.

        Returns ``None`` if more bytes are needed. If the prefix is complete but the body
        is not, the partial body moves to the collecting state (``_need`` >= 0).
        """
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            return None
        n = buf[pos]
        start = pos + 1
        if n >= 0x80:
            n &= 0x7F
            shift = 7
            while True:
                if start - pos >= MAX_PREFIX_LENGTH:
                    raise MalformedFrame(
                        f"frame length prefix is longer than {MAX_PREFIX_LENGTH} bytes"
                    )
                if start >= end:
                    return None  # prefix incomplete
                byte = buf[start]
                start += 1
                n |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
        if n > self._max_size:
            raise FrameTooLarge(
                f"frame declares {n} bytes, above the limit of {self._max_size}",
                size=n,
                limit=self._max_size,
            )
        stop = start + n
        if stop <= end:
            self._pos = stop
            return buf[start:stop]
        # Body incomplete: collect it from the following reads.
        self._parts = [buf[start:]] if start < end else []
        self._have = end - start
        self._need = n
        self._buf = b""
        self._pos = 0
        return None

    async def _read_frame(self) -> bytes | None:
        """:meth:`read_frame` without the concurrent-use check."""
        while True:
            if self._need < 0:
                body = self._parse_buffered()
                if body is not None:
                    return body
            if self._need < 0:
                # Need more bytes for a length prefix (or there are none buffered).
                chunk = b"" if self._eof else await _read_chunk(self._stream, self._read_size)
                rest = len(self._buf) - self._pos
                if not chunk:
                    self._eof = True
                    if rest == 0:
                        return None
                    raise MalformedFrame(
                        f"stream ended inside a frame length prefix ({rest} bytes received)"
                    )
                if rest:
                    self._buf = self._buf[self._pos :] + chunk
                else:
                    self._buf = chunk
                self._pos = 0
                continue
            # Collecting a body of _need bytes; _have of them are in _parts.
            missing = self._need - self._have
            if missing:
                chunk = (
                    b""
                    if self._eof
                    else await _read_chunk(self._stream, max(missing, self._read_size))
                )
                if not chunk:
                    self._eof = True
                    raise MalformedFrame(
                        f"stream ended inside a frame ({self._have} of {self._need} body bytes"
                        " received)"
                    )
                if len(chunk) <= missing:
                    self._parts.append(chunk)
                    self._have += len(chunk)
                else:
                    self._parts.append(chunk[:missing])
                    self._have += missing
                    self._buf = chunk
                    self._pos = missing
                if self._have < self._need:
                    continue
            parts = self._parts
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
            self._have = 0
            self._need = -1
            return body


class FrameWriter:
    """Writes frames to a :class:`ByteStream`, one stream write per batch.

    Concurrent writers are serialized by a lock, so frames never interleave. A body
    larger than :attr:`max_size` raises :class:`FrameTooLarge` before anything is
    written. If a write fails or is cancelled, part of a frame may have been sent: the
    writer is then broken and every later write raises :class:`ConnectionLost`.
    """

    __slots__ = ("_broken", "_lock", "_stream", "max_size")

    def __init__(self, stream: ByteStream, max_size: int = MAX_FRAME_SIZE) -> None:
        """Write frames of at most ``max_size`` body bytes to ``stream``."""
        self._stream = stream
        self.max_size = max_size
        """Largest body this writer sends; larger ones raise :class:`FrameTooLarge`."""
        self._lock = trio.Lock()
        self._broken: BaseException | None = None

    @property
    def broken(self) -> bool:
        """True after a failed or cancelled write; the stream must then be closed."""
        return self._broken is not None

    async def write_frame(self, body: bytes) -> None:
        """Write one frame with body ``body``."""
        await self.write_frames((body,))

    async def write_frames(self, bodies: Sequence[bytes]) -> None:
        """Write one frame per body, all in a single stream write (nothing if empty)."""
        if not bodies:
            return
        limit = self.max_size
        if len(bodies) == 1:
            body = bodies[0]
            n = len(body)
            if n > limit:
                raise FrameTooLarge(
                    f"frame body of {n} bytes is above the limit of {limit}", size=n, limit=limit
                )
            await self._write((_ONE_BYTE_PREFIX[n] if n < 0x80 else _prefix(n)) + body)
            return
        parts: list[bytes] = []
        append = parts.append
        for body in bodies:
            n = len(body)
            if n > limit:
                raise FrameTooLarge(
                    f"frame body of {n} bytes is above the limit of {limit}", size=n, limit=limit
                )
            append(_ONE_BYTE_PREFIX[n] if n < 0x80 else _prefix(n))
            append(body)
        await self._write(b"".join(parts))

    async def write_message(self, msg: Message) -> None:
        """Serialize ``msg`` and write it as one frame."""
        await self.write_frames((msg.SerializeToString(),))

    async def write_messages(self, msgs: Iterable[Message]) -> None:
        """Serialize ``msgs`` and write them as frames in a single stream write."""
        await self.write_frames([m.SerializeToString() for m in msgs])

    async def _write(self, data: bytes) -> None:
        """Write ``data`` under the lock, mapping stream failures to ConnectionLost."""
        try:
            # trio's Lock.acquire() yields even when the lock is free; a write needs no extra
            # trip through the scheduler when nobody else is writing.
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            await self._write_locked(data)
        finally:
            self._lock.release()

    async def _write_locked(self, data: bytes) -> None:
        """The write itself; the caller holds the lock."""
        if self._broken is not None:
            raise ConnectionLost(
                f"an earlier write on this stream failed: {self._broken!r}"
            ) from self._broken
        try:
            await self._stream.write(data)
        except DndmError as exc:  # already ours (ConnectionLost is a ConnectionError too)
            self._broken = exc
            raise
        except _connection_errors() as exc:
            self._broken = exc
            raise ConnectionLost(f"stream broke while writing: {exc!r}") from exc
        except BaseException as exc:  # cancelled or failed mid-write: state unknown
            self._broken = exc
            raise
