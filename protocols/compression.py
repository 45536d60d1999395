"""Optional per-link compression of data batches: zstd and LZ4 (frame format).

Peers list the algorithms they support in ``Capabilities.compression``; the opener of a
link picks one with :func:`negotiate`. ``COMPRESSION_NONE`` always works. A compressed
``DataBatch`` carries, in ``compressed``, a serialized inner ``DataBatch`` holding only
``messages`` and ``timestamps_us`` (:func:`compress_batch` / :func:`decompress_batch`).

:func:`decompress` never produces more than ``max_size`` bytes: a size declared in the
compressed header is checked first, and the decompressors are bounded, so a
decompression bomb costs at most about ``max_size`` bytes of memory before it raises
:class:`~protocols.errors.FrameTooLarge`. Garbage raises
:class:`~protocols.errors.MalformedFrame`.

``zstandard`` and ``lz4`` are optional imports: an algorithm whose library is missing is
simply not listed by :func:`available`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final, TypeAlias

from google.protobuf.message import DecodeError

from protocols.errors import ConfigError, FrameTooLarge, MalformedFrame
from protocols.v1 import common_pb2, data_pb2

try:
    import zstandard
except ImportError:  # pragma: no cover - depends on the installation
    zstandard = None  # type: ignore[assignment]
try:
    import lz4.frame as lz4frame  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the installation
    lz4frame = None

__all__ = [
    "COMPRESSION_THRESHOLD",
    "PREFERENCE",
    "ZSTD_LEVEL",
    "Compression",
    "available",
    "compress",
    "compress_batch",
    "decompress",
    "decompress_batch",
    "negotiate",
]

Compression: TypeAlias = common_pb2.Compression.ValueType
"""Type of a ``dndm.v1.Compression`` value (an ``int``)."""

_NONE: Final = common_pb2.COMPRESSION_NONE
_ZSTD: Final = common_pb2.COMPRESSION_ZSTD
_LZ4: Final = common_pb2.COMPRESSION_LZ4

COMPRESSION_THRESHOLD: Final[int] = 4096
"""Batches whose messages total fewer bytes than this are sent uncompressed."""

PREFERENCE: Final[tuple[Compression, ...]] = (_ZSTD, _LZ4)
"""Algorithms :func:`negotiate` picks from, best first (``COMPRESSION_NONE`` is the fallback)."""

ZSTD_LEVEL: Final[int] = 3
"""zstd compression level used by :func:`compress` (zstd's default: fast, good ratio)."""

_ZSTD_MAX_WINDOW: Final[int] = 1 << 24
"""Largest zstd window (16 MiB) a peer's frame may require, bounding decoder memory."""

_local = threading.local()  # zstd contexts are not thread-safe: one pair per thread


def _zstd_compressor() -> zstandard.ZstdCompressor:
    """This thread's zstd compressor, created on first use."""
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        _local.compressor = compressor
    return compressor


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompressor, created on first use."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        _local.decompressor = decompressor
    return decompressor


def _name(algorithm: int) -> str:
    """Readable name of a compression value, also for values this version does not know."""
    try:
        return common_pb2.Compression.Name(Compression(algorithm))
    except ValueError:
        return f"compression {algorithm}"


def available() -> list[Compression]:
    """The algorithms this process supports, best first; always ends with ``COMPRESSION_NONE``.

    Suitable for ``Capabilities.compression``.
    """
    found: list[Compression] = []
    if zstandard is not None:
        found.append(_ZSTD)
    if lz4frame is not None:
        found.append(_LZ4)
    found.append(_NONE)
    return found


def negotiate(ours: Iterable[int], theirs: Iterable[int]) -> Compression:
    """Pick the best algorithm listed by both sides and available here (zstd, LZ4, none).

    Values unknown to this version are ignored; ``COMPRESSION_NONE`` is the fallback.
    """
    common = set(ours) & set(theirs) & set(available())
    for algorithm in PREFERENCE:
        if algorithm in common:
            return algorithm
    return _NONE


def compress(algorithm: int, data: bytes) -> bytes:
    """Compress ``data`` with ``algorithm`` (``COMPRESSION_NONE`` returns it unchanged).

    zstd output is one frame with the content size in its header; LZ4 output is one LZ4
    frame with the content size stored. Raises :class:`~protocols.errors.ConfigError` for
    an algorithm that is unknown or not available in this process.
    """
    if algorithm == _ZSTD and zstandard is not None:
        return _zstd_compressor().compress(data)
    if algorithm == _LZ4 and lz4frame is not None:
        out: bytes = lz4frame.compress(data, store_size=True)
        return out
    if algorithm == _NONE:
        return data
    raise ConfigError(f"{_name(algorithm)} is not available in this process")


def decompress(algorithm: int, data: bytes, max_size: int) -> bytes:
    """Decompress ``data`` (one zstd or LZ4 frame), producing at most ``max_size`` bytes.

    Raises :class:`~protocols.errors.FrameTooLarge` if the content is (or declares to be)
    larger than ``max_size``, without decompressing more than that, and
    :class:`~protocols.errors.MalformedFrame` for an algorithm that is unknown or not
    available here, for invalid or truncated data and for trailing bytes after the frame.
    ``COMPRESSION_NONE`` returns ``data`` itself (after the size check).
    """
    if max_size < 0:
        raise ValueError(f"max_size must not be negative, not {max_size}")
    if algorithm == _ZSTD and zstandard is not None:
        out = _zstd_decompress(data, max_size)
    elif algorithm == _LZ4 and lz4frame is not None:
        out = _lz4_decompress(data, max_size)
    elif algorithm == _NONE:
        out = data
    else:
        raise MalformedFrame(f"{_name(algorithm)} is not supported by this node")
    if len(out) > max_size:
        raise _too_large(_name(algorithm), max_size)
    return out


def _too_large(what: str, max_size: int, declared: int | None = None) -> FrameTooLarge:
    """The error for content above ``max_size`` (``declared`` = size from the header)."""
    if declared is None:
        return FrameTooLarge(
            f"{what} data holds more than the limit of {max_size} bytes", limit=max_size
        )
    return FrameTooLarge(
        f"{what} data declares {declared} bytes, above the limit of {max_size}",
        size=declared,
        limit=max_size,
    )


def _zstd_decompress(data: bytes, max_size: int) -> bytes:
    """Bounded zstd decompression of exactly one frame."""
    try:
        declared = zstandard.frame_content_size(data)  # -1: not in the header
    except zstandard.ZstdError as exc:
        raise MalformedFrame(f"invalid zstd frame header: {exc}") from exc
    if declared > max_size:
        raise _too_large("zstd", max_size, declared)
    decompressor = _zstd_decompressor()
    try:
        # With a declared size zstd allocates exactly that (checked above) and fails if the
        # content differs; without one it decodes into a buffer of max_output_size bytes and
        # fails if the frame does not fit there (told apart from bad data below).
        # (max_output_size=0 would mean "unlimited", hence the max(); decompress() checks.)
        return decompressor.decompress(
            data, max_output_size=max(max_size, 1), allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        failure = exc
    if declared < 0 and _zstd_exceeds(decompressor, data, max_size):
        raise _too_large("zstd", max_size) from failure
    raise MalformedFrame(f"invalid zstd data: {failure}") from failure


def _zstd_exceeds(decompressor: zstandard.ZstdDecompressor, data: bytes, max_size: int) -> bool:
    """Whether a zstd frame without declared size holds more than ``max_size`` bytes."""
    try:
        with decompressor.stream_reader(data, read_across_frames=False) as reader:
            return len(reader.read(max_size + 1)) > max_size
    except zstandard.ZstdError:
        return False


def _lz4_decompress(data: bytes, max_size: int) -> bytes:
    """Bounded LZ4 frame decompression of exactly one frame."""
    try:
        # content_size 0 = not stored (or empty): then only the bounded decoder limits it.
        declared = int(lz4frame.get_frame_info(data)["content_size"])
        if declared > max_size:
            raise _too_large("LZ4", max_size, declared)
        decompressor = lz4frame.LZ4FrameDecompressor()
        out: bytes = decompressor.decompress(data, max_length=max_size + 1)
    except RuntimeError as exc:  # lz4 reports every decoding failure as RuntimeError
        raise MalformedFrame(f"invalid LZ4 data: {exc}") from exc
    if len(out) > max_size:
        raise _too_large("LZ4", max_size)
    if not decompressor.eof:
        raise MalformedFrame("truncated LZ4 frame")
    if decompressor.unused_data:
        raise MalformedFrame(f"{len(decompressor.unused_data)} bytes after the LZ4 frame")
    if declared and len(out) != declared:
        raise MalformedFrame(f"LZ4 frame declares {declared} bytes but holds {len(out)}")
    return out


def compress_batch(
    batch: data_pb2.DataBatch,
    algorithm: int,
    *,
    threshold: int = COMPRESSION_THRESHOLD,
) -> bool:
    """Compress ``batch`` in place if worthwhile; return whether it was compressed.

    ``batch`` must be uncompressed (messages in ``messages`` / ``timestamps_us``). Nothing
    changes for ``COMPRESSION_NONE``, when the messages total fewer than ``threshold``
    bytes, or when compression would not make the batch smaller. Otherwise ``messages``
    and ``timestamps_us`` move into a compressed inner ``DataBatch`` and ``compression``,
    ``compressed`` and ``uncompressed_size`` are set.
    """
    if algorithm == _NONE or sum(map(len, batch.messages)) < threshold:
        return False
    inner = data_pb2.DataBatch(messages=batch.messages, timestamps_us=batch.timestamps_us)
    raw = inner.SerializeToString()
    packed = compress(algorithm, raw)
    if len(packed) >= len(raw):
        return False
    del batch.messages[:]
    del batch.timestamps_us[:]
    batch.compression = Compression(algorithm)
    batch.compressed = packed
    batch.uncompressed_size = len(raw)
    return True


def decompress_batch(batch: data_pb2.DataBatch, max_size: int) -> None:
    """Undo :func:`compress_batch` in place, decompressing at most ``max_size`` bytes.

    A batch with ``COMPRESSION_NONE`` is left alone. ``uncompressed_size`` is checked
    against ``max_size`` before decompressing (:class:`FrameTooLarge`), and the content
    must have exactly that size and parse as a ``DataBatch`` (else :class:`MalformedFrame`).
    A zero ``uncompressed_size`` (not recorded) is bounded by ``max_size`` only.
    """
    if batch.compression == _NONE:
        return
    if batch.messages or batch.timestamps_us:
        raise MalformedFrame("a compressed batch also carries uncompressed messages")
    declared = batch.uncompressed_size
    if declared > max_size:
        raise FrameTooLarge(
            f"compressed batch declares {declared} bytes, above the limit of {max_size}",
            size=declared,
            limit=max_size,
        )
    raw = decompress(batch.compression, batch.compressed, declared or max_size)
    if declared and len(raw) != declared:
        raise MalformedFrame(
            f"compressed batch declares {declared} bytes but decompresses to {len(raw)}"
        )
    inner = data_pb2.DataBatch()
    try:
        inner.ParseFromString(raw)
    except DecodeError as exc:
        raise MalformedFrame(f"decompressed batch is not a valid DataBatch: {exc}") from exc
    batch.messages.extend(inner.messages)
    batch.timestamps_us.extend(inner.timestamps_us)
    batch.compression = _NONE
    batch.compressed = b""
    batch.uncompressed_size = 0
