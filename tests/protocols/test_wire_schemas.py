"""The v1 wire schemas: generated modules up to date, frames round-trip, names and ids."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest
from google.protobuf.message import Message

from protocols import ids
from protocols.generate import FIX_COMMAND, REPO_ROOT, generate
from protocols.v1 import (
    advert_pb2,
    common_pb2,
    control_pb2,
    data_pb2,
    discovery_pb2,
    hello_pb2,
    ping_pb2,
    result_pb2,
)
from tests.proto import messages_pb2

M = TypeVar("M", bound=Message)


def test_generated_modules_are_not_stale(tmp_path: Path) -> None:
    produced = generate(tmp_path)
    assert produced, "generate() produced no files"
    stale: list[str] = []
    for fresh in produced:
        relative = fresh.relative_to(tmp_path)
        committed = REPO_ROOT / relative
        if not committed.is_file():
            stale.append(f"{relative.as_posix()} (missing)")
        elif committed.read_bytes() != fresh.read_bytes():
            stale.append(f"{relative.as_posix()} (stale)")
    assert not stale, (
        "generated protobuf modules are out of date: "
        + ", ".join(stale)
        + f"; regenerate them with `{FIX_COMMAND}` from the repository root"
    )


def test_generate_is_deterministic(tmp_path: Path) -> None:
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in generate(tmp_path / "a")}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in generate(tmp_path / "b")}
    assert first == second


def _header(sequence: int, route: str = "") -> common_pb2.Header:
    return common_pb2.Header(
        timestamp_us=1_700_000_000_000_000,
        sequence=sequence,
        route=route,
        flags=common_pb2.HEADER_FLAG_CLOSING,
        signature=b"\x01" * 64,
        signer_public_key=b"\x08\x01\x12\x20" + b"\x02" * 32,
    )


def _advert(kind: common_pb2.RouteKind.ValueType, route: str) -> advert_pb2.Advert:
    return advert_pb2.Advert(
        route=route,
        msg_type="dndm.demo.v1.Temperature",
        kind=kind,
        register=True,
        ttl_ms=30_000,
        sequence=7,
        qos=common_pb2.QoS(depth=16, overflow=common_pb2.QoS.DROP_NEWEST, reliable=True),
        handle_id=42,
    )


def _result() -> result_pb2.Result:
    return result_pb2.Result(
        nonce=3,
        code=result_pb2.Result.TRANSIENT,
        description="busy",
        transient=True,
        link_id=9,
    )


CONTROL_FRAMES: dict[str, control_pb2.ControlFrame] = {
    "hello": control_pb2.ControlFrame(
        header=_header(1),
        hello=hello_pb2.Hello(
            protocol_version=ids.PROTOCOL_VERSION,
            node_name="robot-1",
            capabilities=common_pb2.Capabilities(
                compression=[common_pb2.COMPRESSION_ZSTD, common_pb2.COMPRESSION_LZ4],
                reliability=True,
                max_frame_size=ids.MAX_FRAME_SIZE,
                max_batch_messages=1024,
            ),
            intents=[_advert(common_pb2.ROUTE_KIND_INTENT, "dndm.demo.v1.Temperature@robot.1")],
            interests=[_advert(common_pb2.ROUTE_KIND_INTEREST, "robot.*.temp")],
            sent_us=1_700_000_000_000_001,
        ),
    ),
    "adverts": control_pb2.ControlFrame(
        header=_header(2),
        adverts=advert_pb2.AdvertBatch(
            header=_header(2),
            adverts=[
                _advert(common_pb2.ROUTE_KIND_INTENT, "prefix#0123abcd"),
                advert_pb2.Advert(
                    route="robot.*.temp", kind=common_pb2.ROUTE_KIND_INTEREST, handle_id=5
                ),
            ],
        ),
    ),
    "ping": control_pb2.ControlFrame(
        header=_header(3),
        ping=ping_pb2.Ping(nonce=11, sent_us=123, payload=b"abc"),
    ),
    "pong": control_pb2.ControlFrame(
        header=_header(4),
        pong=ping_pb2.Pong(
            nonce=11, ping_sent_us=123, received_us=200, sent_us=201, payload=b"abc"
        ),
    ),
    "result": control_pb2.ControlFrame(header=_header(5), result=_result()),
}

DATA_FRAMES: dict[str, control_pb2.DataFrame] = {
    "open": control_pb2.DataFrame(
        header=_header(1, "dndm.demo.v1.Temperature@robot.1"),
        open=data_pb2.LinkOpen(
            route="dndm.demo.v1.Temperature@robot.1",
            link_id=1,
            qos=common_pb2.QoS(depth=8, overflow=common_pb2.QoS.BLOCK, reliable=True),
            chosen=common_pb2.COMPRESSION_ZSTD,
            initial_credit=64,
        ),
    ),
    "batch": control_pb2.DataFrame(
        header=_header(2),
        batch=data_pb2.DataBatch(
            link_id=1,
            first_sequence=1,
            messages=[b"one", b"", b"three"],
            timestamps_us=[10, 20, 30],
            dropped_since_last=2,
        ),
    ),
    "compressed_batch": control_pb2.DataFrame(
        header=_header(3),
        batch=data_pb2.DataBatch(
            link_id=1,
            first_sequence=4,
            compression=common_pb2.COMPRESSION_LZ4,
            compressed=b"\x04\x22\x4d\x18opaque",
            uncompressed_size=1000,
        ),
    ),
    "ack": control_pb2.DataFrame(
        header=_header(4),
        ack=data_pb2.Ack(link_id=1, cumulative_sequence=3, credit=32, dropped=1),
    ),
    "result": control_pb2.DataFrame(header=_header(5), result=_result()),
}


def _round_trip(frame: M) -> M:
    wire = frame.SerializeToString()
    decoded = type(frame).FromString(wire)
    assert decoded == frame
    assert decoded.SerializeToString() == wire
    return decoded


@pytest.mark.parametrize("variant", sorted(CONTROL_FRAMES))
def test_control_frame_round_trip(variant: str) -> None:
    decoded = _round_trip(CONTROL_FRAMES[variant])
    assert decoded.WhichOneof("body") == variant
    assert decoded.header.sequence == CONTROL_FRAMES[variant].header.sequence


@pytest.mark.parametrize("variant", sorted(DATA_FRAMES))
def test_data_frame_round_trip(variant: str) -> None:
    decoded = _round_trip(DATA_FRAMES[variant])
    assert decoded.WhichOneof("body") == variant.removeprefix("compressed_")


def test_every_oneof_variant_is_covered() -> None:
    control_body = control_pb2.ControlFrame.DESCRIPTOR.oneofs_by_name["body"]
    data_body = control_pb2.DataFrame.DESCRIPTOR.oneofs_by_name["body"]
    assert {f.name for f in control_body.fields} == {
        frame.WhichOneof("body") for frame in CONTROL_FRAMES.values()
    }
    assert {f.name for f in data_body.fields} == {
        frame.WhichOneof("body") for frame in DATA_FRAMES.values()
    }


def test_discovery_announcement_round_trip() -> None:
    announcement = discovery_pb2.Announcement(
        peer_id=b"\x00\x24\x08\x01\x12\x20" + b"\x03" * 32,
        addrs=[b"\x04\x7f\x00\x00\x01\x06\x0f\xa1"],
        adverts=[
            _advert(common_pb2.ROUTE_KIND_INTENT, "dndm.demo.v1.Temperature@robot.1"),
            advert_pb2.Advert(kind=common_pb2.ROUTE_KIND_INTEREST, route="robot.**", handle_id=2),
        ],
        sequence=1_700_000_000_000_000,
    )
    decoded = _round_trip(announcement)
    assert [a.handle_id for a in decoded.adverts] == [42, 2]


def test_empty_frames_round_trip() -> None:
    assert _round_trip(control_pb2.ControlFrame()).WhichOneof("body") is None
    assert _round_trip(control_pb2.DataFrame()).WhichOneof("body") is None


@pytest.mark.parametrize("protocol_id", [ids.CONTROL_PROTOCOL_ID, ids.DATA_PROTOCOL_ID])
def test_protocol_ids_are_versioned(protocol_id: str) -> None:
    assert re.fullmatch(r"/dndm/[a-z]+/\d+\.\d+\.\d+", protocol_id)


def test_protocol_constants() -> None:
    assert ids.CONTROL_PROTOCOL_ID == "/dndm/ctl/1.0.0"
    assert ids.DATA_PROTOCOL_ID == "/dndm/data/1.0.0"
    assert ids.CONTROL_PROTOCOL_ID != ids.DATA_PROTOCOL_ID
    assert ids.PROTOCOL_VERSION == 1
    assert ids.MAX_FRAME_SIZE == 4 * 1024 * 1024
    assert ids.MAX_CONTROL_FRAME_SIZE == 256 * 1024
    assert ids.MAX_CONTROL_FRAME_SIZE <= ids.MAX_FRAME_SIZE


V1_MODULES = [
    advert_pb2,
    common_pb2,
    control_pb2,
    data_pb2,
    discovery_pb2,
    hello_pb2,
    ping_pb2,
    result_pb2,
]


@pytest.mark.parametrize("module", V1_MODULES, ids=lambda m: m.__name__)
def test_v1_names_are_in_package(module: ModuleType) -> None:
    descriptor = module.DESCRIPTOR
    assert descriptor.package == "dndm.v1"
    assert descriptor.name.startswith("protocols/v1/")
    names = [*descriptor.message_types_by_name.values(), *descriptor.enum_types_by_name.values()]
    assert names
    for item in names:
        assert item.full_name.startswith("dndm.v1."), item.full_name


def test_test_messages_package() -> None:
    assert messages_pb2.Foo.DESCRIPTOR.full_name == "dndm.test.Foo"
    assert messages_pb2.Bar.DESCRIPTOR.full_name == "dndm.test.Bar"
    assert messages_pb2.Sample.DESCRIPTOR.full_name == "dndm.test.Sample"
