"""protocols.compression: negotiation, round trips and bounded decompression."""

from __future__ import annotations

import os
import time
import tracemalloc

import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import compression
from protocols.compression import (
    COMPRESSION_THRESHOLD,
    available,
    compress,
    compress_batch,
    decompress,
    decompress_batch,
    negotiate,
)
from protocols.errors import ConfigError, FrameTooLarge, MalformedFrame, ProtocolError
from protocols.ids import MAX_FRAME_SIZE
from protocols.v1 import common_pb2, data_pb2

NONE = common_pb2.COMPRESSION_NONE
ZSTD = common_pb2.COMPRESSION_ZSTD
LZ4 = common_pb2.COMPRESSION_LZ4
ALGORITHMS = [ZSTD, LZ4]
ALL = [ZSTD, LZ4, NONE]
MiB = 1024 * 1024

PAYLOADS = {
    "empty": b"",
    "one": b"x",
    "text": b"the quick brown fox jumps over the lazy dog " * 200,
    "random": os.urandom(50_000),
    "mixed": (os.urandom(1000) + bytes(20_000)) * 50,  # ~1 MiB
}


def test_available() -> None:
    assert available() == [ZSTD, LZ4, NONE]


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ([ZSTD, LZ4, NONE], [ZSTD, LZ4, NONE], ZSTD),
        ([LZ4, ZSTD], [LZ4, ZSTD], ZSTD),  # our preference, not list order
        ([ZSTD, LZ4], [LZ4], LZ4),
        ([LZ4], [ZSTD, LZ4], LZ4),
        ([ZSTD], [LZ4], NONE),
        ([], [ZSTD, LZ4], NONE),
        ([ZSTD, LZ4], [], NONE),
        ([7, 9, ZSTD], [9, 7, ZSTD], ZSTD),  # unknown values ignored
        ([7], [7], NONE),
    ],
)
def test_negotiate(ours: list[int], theirs: list[int], expected: int) -> None:
    assert negotiate(ours, theirs) == expected
    assert negotiate(theirs, ours) == expected


def test_negotiate_with_capabilities() -> None:
    caps = common_pb2.Capabilities(compression=[LZ4])
    assert negotiate(available(), caps.compression) == LZ4


@pytest.mark.parametrize("algorithm", ALL)
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_round_trip(algorithm: int, name: str) -> None:
    data = PAYLOADS[name]
    packed = compress(algorithm, data)
    assert decompress(algorithm, packed, len(data)) == data
    if data:
        with pytest.raises(FrameTooLarge):
            decompress(algorithm, packed, len(data) - 1)


def test_compression_helps_on_repetitive_data() -> None:
    data = PAYLOADS["text"]
    for algorithm in ALGORITHMS:
        assert len(compress(algorithm, data)) < len(data) // 10


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_frames_from_other_encoders(algorithm: int) -> None:
    data = PAYLOADS["mixed"]
    if algorithm == ZSTD:  # streaming, no content size in the header
        cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
        packed = cobj.compress(data) + cobj.flush()
        assert zstandard.frame_content_size(packed) == -1
    else:
        packed = lz4.frame.compress(data, store_size=False, content_checksum=True)
    assert decompress(algorithm, packed, MAX_FRAME_SIZE) == data
    with pytest.raises(FrameTooLarge):
        decompress(algorithm, packed, len(data) - 1)


def _zeros_bomb(algorithm: int, total: int, declare_size: bool) -> bytes:
    """``total`` zero bytes compressed, without ever holding them all in memory."""
    chunk = bytes(MiB)
    parts: list[bytes] = []
    if algorithm == ZSTD:
        cobj = zstandard.ZstdCompressor(write_content_size=declare_size).compressobj(
            size=total if declare_size else -1
        )
        parts += [cobj.compress(chunk) for _ in range(total // MiB)]
        parts.append(cobj.flush())
    else:
        comp = lz4.frame.LZ4FrameCompressor()
        parts.append(comp.begin(source_size=total if declare_size else 0))
        parts += [comp.compress(chunk) for _ in range(total // MiB)]
        parts.append(comp.flush())
    return b"".join(parts)


@pytest.mark.parametrize("declare_size", [True, False], ids=["declared", "undeclared"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decompression_bomb_is_rejected_without_allocating_it(
    algorithm: int, declare_size: bool
) -> None:
    bomb = _zeros_bomb(algorithm, 100 * MiB, declare_size)
    assert len(bomb) < MiB
    limit = 4 * MiB
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(FrameTooLarge):
            decompress(algorithm, bomb, limit)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit, f"peak {peak} bytes"
    assert elapsed < 1.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"garbage" * 20, os.urandom(1000)],
    ids=["empty", "nul", "text", "rnd"],
)
def test_garbage_is_malformed(algorithm: int, garbage: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decompress(algorithm, garbage, MAX_FRAME_SIZE)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_truncated_and_trailing_data_are_malformed(algorithm: int) -> None:
    packed = compress(algorithm, PAYLOADS["text"])
    with pytest.raises(MalformedFrame):
        decompress(algorithm, packed[:-3], MAX_FRAME_SIZE)
    with pytest.raises(MalformedFrame):
        decompress(algorithm, packed + b"\x00", MAX_FRAME_SIZE)
    with pytest.raises(MalformedFrame):
        decompress(algorithm, packed + packed, MAX_FRAME_SIZE)


def test_zstd_frame_needing_a_huge_window_is_malformed() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(19, window_log=27)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    packed = cobj.compress(b"abc" * 1000) + cobj.flush()
    with pytest.raises(MalformedFrame, match="memory"):
        decompress(ZSTD, packed, MAX_FRAME_SIZE)


def test_unknown_algorithms() -> None:
    with pytest.raises(MalformedFrame, match="compression 7"):
        decompress(7, b"abc", 100)
    with pytest.raises(ConfigError, match="compression 7"):
        compress(7, b"abc")
    with pytest.raises(ValueError, match="max_size"):
        decompress(NONE, b"", -1)


def test_none_checks_the_size() -> None:
    assert decompress(NONE, b"abc", 3) == b"abc"
    with pytest.raises(FrameTooLarge):
        decompress(NONE, b"abc", 2)


def test_zero_limit() -> None:
    for algorithm in ALL:
        assert decompress(algorithm, compress(algorithm, b""), 0) == b""
        with pytest.raises(FrameTooLarge):
            decompress(algorithm, compress(algorithm, b"a"), 0)


@settings(max_examples=300, deadline=None)
@given(
    algorithm=st.sampled_from(ALL),
    data=st.binary(max_size=3000),
    max_size=st.integers(0, 10_000),
)
def test_fuzz_decompress_garbage(algorithm: int, data: bytes, max_size: int) -> None:
    try:
        out = decompress(algorithm, data, max_size)
    except ProtocolError:
        return
    assert len(out) <= max_size


@settings(max_examples=200, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    data=st.binary(max_size=3000),
    cut=st.integers(0, 50),
    flip=st.integers(0, 2**16),
)
def test_fuzz_corrupted_frames(algorithm: int, data: bytes, cut: int, flip: int) -> None:
    packed = bytearray(compress(algorithm, data))
    packed[flip % len(packed)] ^= 1 + flip % 255
    damaged = bytes(packed[: max(0, len(packed) - cut)])
    try:
        out = decompress(algorithm, damaged, len(data) + 10)
    except ProtocolError:
        return
    assert len(out) <= len(data) + 10


# --- batches --------------------------------------------------------------------------------


def _batch(messages: list[bytes], with_timestamps: bool = True) -> data_pb2.DataBatch:
    return data_pb2.DataBatch(
        link_id=4,
        first_sequence=10,
        messages=messages,
        timestamps_us=[1_700_000_000_000_000 + i for i in range(len(messages))]
        if with_timestamps
        else [],
        dropped_since_last=2,
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("with_timestamps", [True, False])
def test_batch_round_trip(algorithm: int, with_timestamps: bool) -> None:
    original = _batch([b"reading %d " % i * 20 for i in range(100)], with_timestamps)
    batch = data_pb2.DataBatch()
    batch.CopyFrom(original)
    assert compress_batch(batch, algorithm)
    assert batch.compression == algorithm
    assert not batch.messages
    assert not batch.timestamps_us
    assert batch.uncompressed_size == len(
        data_pb2.DataBatch(
            messages=original.messages, timestamps_us=original.timestamps_us
        ).SerializeToString()
    )
    assert batch.ByteSize() < original.ByteSize() // 3
    wire = data_pb2.DataBatch.FromString(batch.SerializeToString())
    decompress_batch(wire, MAX_FRAME_SIZE)
    assert wire == original


def test_small_batches_and_none_stay_uncompressed() -> None:
    small = _batch([b"x" * (COMPRESSION_THRESHOLD - 1)])
    assert not compress_batch(small, ZSTD)
    assert small.compression == NONE
    assert len(small.messages) == 1
    big = _batch([b"x" * COMPRESSION_THRESHOLD])
    assert not compress_batch(big, NONE)
    assert compress_batch(big, ZSTD)
    assert not compress_batch(_batch([b"x" * 100]), ZSTD, threshold=101)
    assert compress_batch(_batch([b"x" * 100]), ZSTD, threshold=100)


def test_incompressible_batch_stays_uncompressed() -> None:
    batch = _batch([os.urandom(10_000)])
    assert not compress_batch(batch, LZ4)
    assert batch.compression == NONE


def test_uncompressed_batch_is_left_alone() -> None:
    batch = _batch([b"a", b"b"])
    decompress_batch(batch, 10)
    assert list(batch.messages) == [b"a", b"b"]


def test_batch_declaring_too_much_is_rejected_before_decompressing() -> None:
    batch = data_pb2.DataBatch(
        compression=ZSTD, compressed=b"not even zstd", uncompressed_size=MAX_FRAME_SIZE + 1
    )
    with pytest.raises(FrameTooLarge, match="declares"):
        decompress_batch(batch, MAX_FRAME_SIZE)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_batch_bomb_with_a_small_declared_size(algorithm: int) -> None:
    batch = data_pb2.DataBatch(
        compression=compression.Compression(algorithm),
        compressed=_zeros_bomb(algorithm, 64 * MiB, declare_size=False),
        uncompressed_size=1000,
    )
    with pytest.raises(FrameTooLarge):
        decompress_batch(batch, MAX_FRAME_SIZE)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_batch_with_wrong_declared_size_is_malformed(algorithm: int) -> None:
    batch = _batch([b"y" * 5000])
    assert compress_batch(batch, algorithm)
    batch.uncompressed_size += 1
    with pytest.raises(MalformedFrame, match="declares"):
        decompress_batch(batch, MAX_FRAME_SIZE)


def test_batch_whose_content_is_not_a_batch_is_malformed() -> None:
    raw = b"\xff\xff\xff"
    batch = data_pb2.DataBatch(
        compression=ZSTD, compressed=compress(ZSTD, raw), uncompressed_size=len(raw)
    )
    with pytest.raises(MalformedFrame, match="not a valid DataBatch"):
        decompress_batch(batch, MAX_FRAME_SIZE)


def test_compressed_batch_with_plain_messages_is_malformed() -> None:
    batch = _batch([b"z" * 5000])
    assert compress_batch(batch, ZSTD)
    batch.messages.append(b"extra")
    with pytest.raises(MalformedFrame, match="also carries"):
        decompress_batch(batch, MAX_FRAME_SIZE)


def test_unsupported_batch_compression_is_malformed() -> None:
    batch = data_pb2.DataBatch(compressed=b"abc", uncompressed_size=3)
    batch.compression = 5  # type: ignore[assignment]
    with pytest.raises(MalformedFrame):
        decompress_batch(batch, MAX_FRAME_SIZE)


def test_module_constants() -> None:
    assert compression.COMPRESSION_THRESHOLD == 4096
    assert compression.PREFERENCE == (ZSTD, LZ4)
