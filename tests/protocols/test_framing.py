"""protocols.framing: varint-prefixed frames over byte streams."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamError, StreamReset

from protocols.errors import ConnectionLost, FrameTooLarge, MalformedFrame, ProtocolError
from protocols.framing import (
    DEFAULT_READ_SIZE,
    FrameReader,
    FrameWriter,
    encode_frame,
    encode_message,
    parse_message,
    read_message,
)
from protocols.ids import MAX_CONTROL_FRAME_SIZE, MAX_FRAME_SIZE
from protocols.v1 import common_pb2, control_pb2, data_pb2, ping_pb2, result_pb2

# --- helpers -----------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """Reference LEB128 encoder."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class TrioByteStream:
    """Adapts a trio stream to the ByteStream protocol (read/write)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return bytes(await self.stream.receive_some(n))

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)


class FakeStream:
    """Serves ``data`` in chunks whose sizes come from ``chunks``; counts reads and bytes.

    At the end: returns b"" (or raises ``end`` if given). ``write`` records each call.
    """

    def __init__(
        self,
        data: bytes = b"",
        chunks: Callable[[int], int] | None = None,
        end: BaseException | None = None,
        write_error: BaseException | None = None,
    ) -> None:
        self.data = data
        self.pos = 0
        self.chunks = chunks or (lambda n: n)
        self.end = end
        self.write_error = write_error
        self.read_calls = 0
        self.requested = 0
        self.delivered = 0
        self.writes: list[bytes] = []

    async def read(self, n: int | None = None) -> bytes:
        assert n is not None
        assert n > 0
        self.read_calls += 1
        self.requested += n
        if self.pos >= len(self.data):
            if self.end is not None:
                raise self.end
            return b""
        size = max(1, min(n, self.chunks(n)))
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        self.delivered += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self.write_error is not None:
            raise self.write_error
        self.writes.append(data)


class EndlessStream:
    """Serves ``head`` then zeros forever, counting what it hands out."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.read_calls = 0
        self.delivered = 0

    async def read(self, n: int | None = None) -> bytes:
        assert n is not None
        self.read_calls += 1
        chunk = (self.head[self.delivered :] + bytes(n))[:n]
        self.delivered += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        raise AssertionError("not written to")


def one_byte(n: int) -> int:
    return 1


def random_chunks(seed: int) -> Callable[[int], int]:
    rng = random.Random(seed)
    return lambda n: rng.choice([1, 2, 3, 5, 7, 64, 1000, rng.randint(1, 100_000)])


async def read_all(reader: FrameReader) -> list[bytes]:
    frames: list[bytes] = []
    while (body := await reader.read_frame()) is not None:
        frames.append(body)
    return frames


BODIES: list[bytes] = [
    b"",
    b"a",
    b"x" * 127,
    b"y" * 128,
    bytes(range(256)) * 64,  # 16 KiB: two-byte prefix
    b"z" * 16_384,
    b"\x00" * 70_000,  # bigger than one read
    b"q" * 300_000,  # three-byte prefix, many reads
]

# --- encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 300, 16_383, 16_384, 2**21, MAX_FRAME_SIZE])
def test_encode_frame_prefix_is_leb128(n: int) -> None:
    body = b"b" * n
    frame = encode_frame(body)
    assert frame == varint(n) + body


def test_encode_message() -> None:
    msg = control_pb2.ControlFrame(ping=ping_pb2.Ping(nonce=5, payload=b"p" * 200))
    body = msg.SerializeToString()
    assert encode_message(msg) == varint(len(body)) + body


def test_encode_frame_rejects_lengths_beyond_five_bytes() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 2**35

    with pytest.raises(FrameTooLarge):
        encode_frame(Huge(b""))


# --- reading: round trips ------------------------------------------------------------------


async def test_round_trip_over_memory_stream() -> None:
    left, right = trio.testing.memory_stream_pair()
    writer = FrameWriter(TrioByteStream(left))
    reader = FrameReader(TrioByteStream(right))
    received: list[bytes] = []

    async def consume() -> None:
        received.extend(await read_all(reader))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await writer.write_frames(BODIES[:4])
        for body in BODIES[4:]:
            await writer.write_frame(body)
        await left.aclose()
    assert received == BODIES
    assert await reader.read_frame() is None  # stays at EOF


@pytest.mark.parametrize(
    "chunks",
    [one_byte, random_chunks(1), random_chunks(2), random_chunks(3), lambda n: n],
    ids=["1-byte", "random-1", "random-2", "random-3", "whole"],
)
@pytest.mark.parametrize("read_size", [1, 3, 100, DEFAULT_READ_SIZE])
async def test_frames_split_across_reads(chunks: Callable[[int], int], read_size: int) -> None:
    bodies = BODIES[:6] if chunks is one_byte else BODIES
    data = b"".join(encode_frame(b) for b in bodies)
    stream = FakeStream(data, chunks)
    reader = FrameReader(stream, read_size=read_size)
    assert await read_all(reader) == bodies
    assert stream.delivered == len(data)


@settings(max_examples=100, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=600), max_size=20),
    seed=st.integers(0, 2**32),
    read_size=st.integers(1, 1000),
)
def test_round_trip_any_split(bodies: list[bytes], seed: int, read_size: int) -> None:
    data = b"".join(encode_frame(b) for b in bodies)
    rng = random.Random(seed)
    stream = FakeStream(data, lambda n: rng.randint(1, n))

    async def main() -> list[bytes]:
        return await read_all(FrameReader(stream, read_size=read_size))

    assert trio.run(main) == bodies


async def test_burst_of_small_frames_costs_one_read() -> None:
    bodies = [bytes([i]) * 64 for i in range(200)]
    stream = FakeStream(b"".join(encode_frame(b) for b in bodies))
    reader = FrameReader(stream)
    frames = await reader.read_frames(max_frames=150)
    assert frames == bodies[:150]
    assert stream.read_calls == 1
    assert reader.buffered_frames() == bodies[150:]
    assert stream.read_calls == 1
    assert reader.buffered_frames() == []
    assert await reader.read_frames() == []  # clean EOF
    assert reader.at_eof


async def test_read_frames_completes_a_split_frame_then_returns_the_rest() -> None:
    data = b"".join(encode_frame(b) for b in [b"a" * 100, b"b" * 10, b"c" * 10])
    sizes = iter([50, len(data)])
    reader = FrameReader(FakeStream(data, lambda n: next(sizes)))
    assert await reader.read_frames() == [b"a" * 100, b"b" * 10, b"c" * 10]


async def test_buffered_frames_does_not_wait() -> None:
    reader = FrameReader(FakeStream(encode_frame(b"x")))
    assert reader.buffered_frames() == []  # nothing read yet
    assert reader.buffered == 0


async def test_read_frames_rejects_nonpositive_max() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        await FrameReader(FakeStream()).read_frames(0)


# --- reading: limits and malformed input ---------------------------------------------------


async def test_oversize_prefix_raises_before_reading_the_body() -> None:
    stream = EndlessStream(b"\xff\xff\xff\xff\x0f")  # 2**32 - 1, then "gigabytes" of zeros
    reader = FrameReader(stream)
    with pytest.raises(FrameTooLarge, match="4294967295"):
        await reader.read_frame()
    assert stream.read_calls == 1
    assert stream.delivered <= DEFAULT_READ_SIZE
    with pytest.raises(FrameTooLarge):  # sticky
        await reader.read_frame()
    assert stream.read_calls == 1


async def test_oversize_prefix_arriving_bytewise() -> None:
    stream = FakeStream(b"\xff\xff\xff\xff\x0f" + bytes(1000), one_byte)
    with pytest.raises(FrameTooLarge):
        await FrameReader(stream).read_frame()
    assert stream.delivered == 5


@pytest.mark.parametrize("limit", [0, 100, MAX_CONTROL_FRAME_SIZE, MAX_FRAME_SIZE])
async def test_limit_is_inclusive(limit: int) -> None:
    at_limit = encode_frame(bytes(limit))
    reader = FrameReader(FakeStream(at_limit + varint(limit + 1)), max_size=limit)
    assert len(await reader.read_frame() or b"") == limit
    with pytest.raises(FrameTooLarge):
        await reader.read_frame()


async def test_max_size_can_be_lowered_and_is_validated() -> None:
    reader = FrameReader(FakeStream(encode_frame(b"x" * 200)))
    reader.max_size = 199
    with pytest.raises(FrameTooLarge):
        await reader.read_frame()
    with pytest.raises(ValueError, match="max_size"):
        reader.max_size = -1
    with pytest.raises(ValueError, match="read_size"):
        FrameReader(FakeStream(), read_size=0)


async def test_good_frames_before_a_bad_one_are_not_lost() -> None:
    data = encode_frame(b"one") + encode_frame(b"two") + varint(MAX_FRAME_SIZE + 1)
    reader = FrameReader(FakeStream(data))
    assert await reader.read_frames() == [b"one", b"two"]
    with pytest.raises(FrameTooLarge):
        await reader.read_frames()


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x80\x80\x80\x80\x01",  # 6-byte varint
        b"\x80\x80\x80\x80\x80",  # a 5th byte that continues
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" + bytes(100),
    ],
)
@pytest.mark.parametrize("chunks", [one_byte, lambda n: n], ids=["1-byte", "whole"])
async def test_prefix_longer_than_five_bytes_is_malformed(
    data: bytes, chunks: Callable[[int], int]
) -> None:
    reader = FrameReader(FakeStream(data, chunks))
    with pytest.raises(MalformedFrame, match="longer than 5 bytes"):
        await reader.read_frame()


async def test_non_minimal_five_byte_prefix_is_accepted() -> None:
    reader = FrameReader(FakeStream(b"\x83\x80\x80\x80\x00abc"))
    assert await reader.read_frame() == b"abc"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (encode_frame(b"x" * 300)[:-1], "inside a frame"),  # body cut short
        (encode_frame(b"x" * 10)[:1], "inside a frame"),  # prefix only
        (b"\x80", "inside a frame length prefix"),  # prefix cut short
        (encode_frame(b"ok") + b"\xac\x02", "inside a frame"),
    ],
)
@pytest.mark.parametrize("chunks", [one_byte, lambda n: n], ids=["1-byte", "whole"])
async def test_truncated_frame_is_malformed(
    data: bytes, match: str, chunks: Callable[[int], int]
) -> None:
    reader = FrameReader(FakeStream(data, chunks))
    with pytest.raises(MalformedFrame, match=match):  # noqa: PT012
        while await reader.read_frame() is not None:
            pass
    with pytest.raises(MalformedFrame):  # sticky
        await reader.read_frame()


async def test_clean_eof_returns_none() -> None:
    assert await FrameReader(FakeStream(b"")).read_frame() is None
    reader = FrameReader(FakeStream(encode_frame(b"last")))
    assert await reader.read_frame() == b"last"
    assert await reader.read_frame() is None
    assert await reader.read_frame() is None


async def test_stream_eof_exception_is_end_of_stream() -> None:
    stream = FakeStream(encode_frame(b"a") + encode_frame(b"b"), end=StreamEOF())
    reader = FrameReader(stream)
    assert await read_all(reader) == [b"a", b"b"]
    calls = stream.read_calls
    assert await reader.read_frame() is None  # not asked again after EOF
    assert stream.read_calls == calls


async def test_stream_eof_exception_inside_a_frame_is_malformed() -> None:
    stream = FakeStream(encode_frame(b"abc")[:-1], end=StreamEOF())
    with pytest.raises(MalformedFrame):
        await FrameReader(stream).read_frame()


@pytest.mark.parametrize(
    "error",
    [
        StreamReset(),
        StreamClosed(),
        StreamError("boom"),
        trio.BrokenResourceError(),
        trio.ClosedResourceError(),
        ConnectionResetError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_stream_failure_is_connection_lost(error: BaseException) -> None:
    stream = FakeStream(encode_frame(b"a") + b"\x05ab", end=error)
    reader = FrameReader(stream)
    assert await reader.read_frame() == b"a"
    with pytest.raises(ConnectionLost) as info:
        await reader.read_frame()
    assert info.value.__cause__ is error


async def test_other_exceptions_pass_through() -> None:
    stream = FakeStream(b"", end=KeyError("bug"))
    with pytest.raises(KeyError):
        await FrameReader(stream).read_frame()


async def test_cancelled_read_loses_no_data() -> None:
    left, right = trio.testing.memory_stream_pair()
    reader = FrameReader(TrioByteStream(right), read_size=1000)
    frame = encode_frame(b"m" * 5000) + encode_frame(b"next")
    await left.send_all(frame[:2500])
    with trio.move_on_after(0.05) as scope:
        await reader.read_frame()
    assert scope.cancelled_caught
    await left.send_all(frame[2500:])
    assert await reader.read_frame() == b"m" * 5000
    assert await reader.read_frame() == b"next"


async def test_concurrent_readers_are_refused() -> None:
    left, right = trio.testing.memory_stream_pair()
    reader = FrameReader(TrioByteStream(right))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.read_frame)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await reader.read_frame()
        with pytest.raises(trio.BusyResourceError):
            reader.buffered_frames()
        await left.send_all(encode_frame(b"x"))


# --- messages ------------------------------------------------------------------------------


def _ping_frame() -> control_pb2.ControlFrame:
    return control_pb2.ControlFrame(
        header=common_pb2.Header(sequence=1, timestamp_us=123),
        ping=ping_pb2.Ping(nonce=7, sent_us=9, payload=b"hi"),
    )


async def test_read_message() -> None:
    ack = control_pb2.DataFrame(ack=data_pb2.Ack(link_id=3, credit=10))
    stream = FakeStream(encode_message(_ping_frame()) + encode_message(ack))
    reader = FrameReader(stream, MAX_CONTROL_FRAME_SIZE)
    assert await read_message(reader, control_pb2.ControlFrame) == _ping_frame()
    assert await read_message(reader, control_pb2.DataFrame) == ack
    assert await read_message(reader, control_pb2.DataFrame) is None


@pytest.mark.parametrize("frame_type", [control_pb2.ControlFrame, control_pb2.DataFrame])
async def test_frame_without_body_is_malformed(
    frame_type: type[control_pb2.ControlFrame] | type[control_pb2.DataFrame],
) -> None:
    only_header = frame_type(header=common_pb2.Header(sequence=4))
    reader = FrameReader(FakeStream(encode_message(only_header) + encode_frame(b"")))
    with pytest.raises(MalformedFrame, match="has no body"):
        await read_message(reader, frame_type)
    with pytest.raises(MalformedFrame, match="has no body"):  # empty frame
        await read_message(reader, frame_type)


def test_message_without_body_oneof_may_be_empty() -> None:
    assert parse_message(b"", data_pb2.Ack) == data_pb2.Ack()


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",  # truncated tag
        b"\x0a\x05ab",  # length-delimited field running past the end
        b"\x12\x02\x0a\xff",  # nested message with a bad length
        b"\x08",  # varint field without value
        b"\x1a\x02\x0a\x02\xc3\x28",  # invalid UTF-8 in a string
    ],
)
def test_invalid_protobuf_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedFrame, match=r"not a valid dndm\.v1\.ControlFrame"):
        parse_message(body, control_pb2.ControlFrame)


def test_unknown_fields_are_ignored() -> None:
    body = _ping_frame().SerializeToString() + b"\xa0\x01\x05"  # field 20 varint 5
    parsed = parse_message(body, control_pb2.ControlFrame)
    assert parsed.header == _ping_frame().header
    assert parsed.ping == _ping_frame().ping


def _read_messages(data: bytes, message_type: type[object], seed: int) -> list[object]:
    """Read every message from ``data``; ProtocolError subclasses propagate."""
    rng = random.Random(seed)
    stream = FakeStream(data, lambda n: rng.randint(1, 300))
    parsed: list[object] = []

    async def main() -> None:
        reader = FrameReader(stream, max_size=MAX_CONTROL_FRAME_SIZE, read_size=128)
        with trio.fail_after(5):
            while (msg := await read_message(reader, message_type)) is not None:  # type: ignore[type-var]
                parsed.append(msg)

    trio.run(main)
    return parsed


FRAME_TYPES = st.sampled_from([control_pb2.ControlFrame, control_pb2.DataFrame])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), message_type=FRAME_TYPES, seed=st.integers(0, 2**16))
def test_fuzz_random_bytes(data: bytes, message_type: type[object], seed: int) -> None:
    try:
        parsed = _read_messages(data, message_type, seed)
    except ProtocolError:
        return
    for msg in parsed:
        assert msg.WhichOneof("body") is not None  # type: ignore[attr-defined]


def _valid_frames() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda nonce, desc: encode_message(
            control_pb2.ControlFrame(
                header=common_pb2.Header(sequence=nonce),
                result=result_pb2.Result(nonce=nonce, description=desc),
            )
        ),
        st.integers(0, 2**64 - 1),
        st.text(max_size=300),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5).map(b"".join))
def test_fuzz_framed_random_bodies(data: bytes) -> None:
    """Correctly framed bodies of random bytes: parsed or a ProtocolError, nothing else."""
    framed = encode_frame(data)
    for message_type in (control_pb2.ControlFrame, control_pb2.DataFrame):
        with contextlib.suppress(ProtocolError):
            _read_messages(framed, message_type, 0)


GARBAGE = st.one_of(
    # a prefix promising more bytes than follow
    st.integers(1, MAX_CONTROL_FRAME_SIZE).flatmap(
        lambda n: st.binary(max_size=min(n - 1, 500)).map(lambda b: varint(n) + b)
    ),
    # a prefix above the limit
    st.integers(MAX_CONTROL_FRAME_SIZE + 1, 2**32 - 1).map(lambda n: varint(n) + bytes(8)),
    # a prefix longer than five bytes
    st.binary(min_size=5, max_size=9).map(lambda b: bytes(x | 0x80 for x in b) + b"\x01"),
    # a frame holding something that is not a ControlFrame with a body
    st.sampled_from([b"", b"\xff", b"\x0a\x00", b"\x08\x01"]).map(encode_frame),
)


@settings(max_examples=300, deadline=None)
@given(good=_valid_frames(), garbage=GARBAGE, seed=st.integers(0, 2**16))
def test_fuzz_garbage_after_a_valid_frame(good: bytes, garbage: bytes, seed: int) -> None:
    rng = random.Random(seed)
    stream = FakeStream(good + garbage, lambda n: rng.randint(1, n))

    async def main() -> None:
        reader = FrameReader(stream, max_size=MAX_CONTROL_FRAME_SIZE, read_size=64)
        first = await read_message(reader, control_pb2.ControlFrame)
        assert first is not None
        assert encode_message(first) == good
        with pytest.raises(ProtocolError):
            await read_message(reader, control_pb2.ControlFrame)

    trio.run(main)


@settings(max_examples=300, deadline=None)
@given(good=_valid_frames(), garbage=st.binary(min_size=1, max_size=500))
def test_fuzz_random_garbage_after_a_valid_frame(good: bytes, garbage: bytes) -> None:
    parsed: list[object] = []
    try:
        parsed = _read_messages(good + garbage, control_pb2.ControlFrame, 1)
    except ProtocolError:
        pass
    else:
        assert parsed
    if parsed:
        assert encode_message(parsed[0]) == good  # type: ignore[arg-type]


# --- writing -------------------------------------------------------------------------------


async def test_one_write_per_batch() -> None:
    stream = FakeStream()
    writer = FrameWriter(stream)
    bodies = [bytes([i]) * (i * 10) for i in range(50)]
    await writer.write_frames(bodies)
    assert len(stream.writes) == 1
    assert stream.writes[0] == b"".join(encode_frame(b) for b in bodies)
    await writer.write_frames([])
    assert len(stream.writes) == 1
    await writer.write_messages([_ping_frame(), _ping_frame()])
    assert len(stream.writes) == 2
    assert stream.writes[1] == encode_message(_ping_frame()) * 2
    await writer.write_message(_ping_frame())
    assert stream.writes[2] == encode_message(_ping_frame())


async def test_writer_refuses_oversize_bodies_before_writing() -> None:
    stream = FakeStream()
    writer = FrameWriter(stream, max_size=100)
    with pytest.raises(FrameTooLarge):
        await writer.write_frames([b"ok", b"x" * 101])
    small = FrameWriter(stream, max_size=10)
    with pytest.raises(FrameTooLarge):
        await small.write_frame(b"x" * 11)
    assert stream.writes == []
    assert not writer.broken


async def test_concurrent_writers_do_not_interleave() -> None:
    left, right = trio.testing.memory_stream_pair()
    writer = FrameWriter(TrioByteStream(left))
    reader = FrameReader(TrioByteStream(right))
    batches = {task: [f"{task}:{i}".encode() * (1 + i * 50) for i in range(20)] for task in "abc"}

    async def send(task: str) -> None:
        for i in range(0, 20, 4):
            await writer.write_frames(batches[task][i : i + 4])

    received: list[bytes] = []

    async def consume() -> None:
        received.extend(await read_all(reader))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        async with trio.open_nursery() as senders:
            for task in batches:
                senders.start_soon(send, task)
        await left.aclose()
    for task, bodies in batches.items():
        assert [b for b in received if b.startswith(task.encode())] == bodies
    # each batch of four arrived contiguously
    for i in range(0, len(received), 4):
        assert len({b[:1] for b in received[i : i + 4]}) == 1


@pytest.mark.parametrize(
    "error",
    [StreamClosed(), StreamReset(), trio.BrokenResourceError(), trio.ClosedResourceError()],
    ids=lambda e: type(e).__name__,
)
async def test_write_failure_is_connection_lost_and_breaks_the_writer(
    error: BaseException,
) -> None:
    stream = FakeStream(write_error=error)
    writer = FrameWriter(stream)
    with pytest.raises(ConnectionLost) as info:
        await writer.write_frame(b"x")
    assert info.value.__cause__ is error
    assert writer.broken
    stream.write_error = None
    with pytest.raises(ConnectionLost, match="earlier write"):
        await writer.write_frame(b"y")
    assert stream.writes == []


async def test_cancelled_write_breaks_the_writer() -> None:
    class SlowStream(FakeStream):
        async def write(self, data: bytes) -> None:
            await trio.sleep_forever()

    writer = FrameWriter(SlowStream())
    with trio.move_on_after(0.01):
        await writer.write_frame(b"x")
    assert writer.broken
    with pytest.raises(ConnectionLost):
        await writer.write_frame(b"y")
