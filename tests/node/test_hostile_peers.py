"""Hostile peers: hand-written frames on our own protocols against a real Node.

A hostile peer is a plain py-libp2p host built with :func:`dndm_p2p.host.build.running_host` (same
Noise / yamux settings as a node) that opens ``/dndm/ctl/1.0.0`` and ``/dndm/data/1.0.0``
streams by hand and writes whatever it likes on them.  It also accepts the streams the node
opens to it (the node's control stream, and data streams when it advertises an intent), so
that it can read what the node answers.

Every test runs the node under test next to a legitimate second node with one link each way,
sends messages on both links before and after the attack, and checks that every one of them
arrives, in order: the attack costs the attacker its stream or its session, never the node,
its other links or their data.  Each attack must also leave a trace: an error in
``node.errors`` and on the event stream whose message names the problem, and a counter.

Tests whose name ends in ``_per_spec`` check what ``docs/wire-protocol.md`` and the ``.proto``
comments promise the peer is told; the others check that the node survives.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from libp2p.host.exceptions import StreamFailure

from protocols.errors import (
    DndmError,
    FrameTooLarge,
    MalformedFrame,
    ProtocolError,
    UnknownRoute,
    VersionMismatch,
)
from protocols.framing import encode_frame, encode_message
from protocols.ids import (
    CONTROL_PROTOCOL_ID,
    DATA_PROTOCOL_ID,
    MAX_CONTROL_FRAME_SIZE,
    MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
)
from protocols.v1 import (
    advert_pb2,
    common_pb2,
    control_pb2,
    data_pb2,
    ping_pb2,
    result_pb2,
)
from tests.proto.messages_pb2 import Foo
from tests.support.trio_checks import live_tasks

if TYPE_CHECKING:
    pass
from tests.support.hostile import (
    ERROR,
    FOO,
    FRAME_TOO_LARGE,
    MALFORMED,
    MAX_LINKS_PER_PEER,
    MAX_REMOTE_ADVERTS,
    NODE_OUT_ROUTE,
    OK,
    UNKNOWN_ROUTE,
    WAIT,
    Code,
    FrameStream,
    ack,
    advert,
    adverts,
    arena,
    batch,
    code_name,
    data_result,
    foo,
    hello,
    is_libp2p_inbound_handler,
    link_open,
    next_error,
    ping,
    recorded,
    settled_new_tasks,
    varint,
)

#: name -> (what the hostile peer writes first on its control stream, the error class the node
#: records, a piece of the error's message).
CONTROL_GARBAGE = {
    "length-prefix-longer-than-5-bytes": (b"\xff" * 16, MalformedFrame, "prefix is longer"),
    "not-protobuf": (encode_frame(b"garbage"), MalformedFrame, "is not a valid dndm.v1"),
    "frame-without-body": (encode_frame(b""), MalformedFrame, "has no body"),
    "only-unknown-fields": (encode_frame(b"\x80\x01\x01"), MalformedFrame, "has no body"),
}


@pytest.mark.parametrize("name", list(CONTROL_GARBAGE))
async def test_control_stream_garbage_drops_the_peer_only(name: str) -> None:
    data, kind, text = CONTROL_GARBAGE[name]
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        errors_before = a.node.error_count
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.write(data)
        event = await next_error(events, kind, text, h.peer)
        assert event.error in a.node.errors
        assert a.node.error_count > errors_before
        assert h.session.stats.protocol_errors == 1
        await h.wait_dropped()
        assert a.node.session(h.peer) is None
        await a.check_legit()


@pytest.mark.parametrize("length", [MAX_CONTROL_FRAME_SIZE + 1, 0xFFFFFFFF, 2**35 - 1])
async def test_control_frame_length_above_the_limit_is_rejected_before_the_body(
    length: int,
) -> None:
    """Only the length prefix is sent: the node must refuse it without waiting for a body."""
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.send(hello())
        await control.write(varint(length))  # and nothing more: the stream stays open
        event = await next_error(events, FrameTooLarge, f"declares {length} bytes", h.peer)
        assert f"above the limit of {MAX_CONTROL_FRAME_SIZE}" in event.detail
        assert recorded(a.node, FrameTooLarge, str(length))
        assert h.session.stats.protocol_errors == 1
        await h.wait_dropped()
        await a.check_legit()


@pytest.mark.parametrize(
    ("tail", "text"),
    [
        (varint(100) + b"x" * 10, "stream ended inside a frame (10 of 100 body bytes"),
        (b"\x80\x80", "stream ended inside a frame length prefix"),
    ],
    ids=["truncated-body", "truncated-prefix"],
)
async def test_control_truncated_frame_then_eof(tail: bytes, text: str) -> None:
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.send(hello())
        await control.write(tail)
        await control.close()
        await next_error(events, MalformedFrame, text, h.peer)
        assert recorded(a.node, MalformedFrame, text)
        assert h.session.stats.protocol_errors == 1
        await h.wait_dropped()
        await a.check_legit()


async def test_control_valid_frame_followed_by_garbage() -> None:
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.open(CONTROL_PROTOCOL_ID)
        hello_frame = encode_message(hello(node_name="first-good-then-bad"))
        await control.write(hello_frame + encode_frame(b"\xff\xff\xff\xff"))
        await next_error(events, MalformedFrame, "not a valid dndm.v1.ControlFrame", h.peer)
        # The good frame before the garbage was applied.
        assert h.session.hello_received.is_set()
        assert h.session.remote_name == "first-good-then-bad"
        assert h.session.stats.protocol_errors == 1
        await h.wait_dropped()
        await a.check_legit()


@pytest.mark.parametrize(
    "first",
    [
        ping(1),
        adverts(advert(f"{FOO}@x", 1)),
        control_pb2.ControlFrame(result=result_pb2.Result(code=OK)),
        control_pb2.ControlFrame(pong=ping_pb2.Pong(nonce=1)),
    ],
    ids=["ping", "adverts", "result", "pong"],
)
async def test_control_first_frame_not_a_hello(first: control_pb2.ControlFrame) -> None:
    kind = first.WhichOneof("body")
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.send(first)
        await next_error(events, ProtocolError, f"sent {kind!r} before hello", h.peer)
        assert recorded(a.node, ProtocolError, "before hello")
        assert h.session.stats.protocol_errors == 1
        assert not h.session.hello_received.is_set()
        await h.wait_dropped()
        await a.check_legit()


async def test_control_hello_with_protocol_version_2() -> None:
    """The hostile side must get a VERSION_MISMATCH Result on the node's control stream."""
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        errors_before = a.node.error_count
        control = await h.open(CONTROL_PROTOCOL_ID)
        (hello_sequence,) = await control.send(hello(version=2))
        await next_error(events, VersionMismatch, "version 2", h.peer)
        assert a.node.error_count > errors_before
        assert recorded(a.node, VersionMismatch, "version 2")
        assert isinstance(h.session.error, VersionMismatch)
        results = await h.node_results()
        await h.wait_dropped()
        await a.check_legit()
        assert [code_name(r.code) for r in results] == ["VERSION_MISMATCH"], (
            "the node closed its control stream without sending the VERSION_MISMATCH Result"
        )
        (result,) = results
        assert result.nonce == hello_sequence, "nonce must be the Hello's header.sequence"
        assert str(PROTOCOL_VERSION) in result.description


async def test_control_second_hello() -> None:
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.send(hello())
        with trio.fail_after(WAIT):
            await h.session.hello_received.wait()
        await control.send(hello(node_name="again"))
        await next_error(events, ProtocolError, "sent a second hello", h.peer)
        assert recorded(a.node, ProtocolError, "second hello")
        assert h.session.stats.protocol_errors == 1
        assert h.session.remote_name == "hostile"  # the second one was not applied
        await h.wait_dropped()
        await a.check_legit()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode_frame(b"garbage"), MALFORMED),
        (varint(MAX_CONTROL_FRAME_SIZE + 1), FRAME_TOO_LARGE),
        (b"\xff" * 8, MALFORMED),
    ],
    ids=["malformed", "frame-too-large", "prefix-longer-than-5-bytes"],
)
async def test_control_stream_errors_are_answered_per_spec(data: bytes, code: Code) -> None:
    """wire-protocol.md, Framing: "A length above the limit is answered with a Result of code
    FRAME_TOO_LARGE and the stream is closed. A prefix longer than 5 bytes (not a valid length
    at all), a frame that does not parse, or one with no body set, gets MALFORMED"."""
    async with arena() as a, a.hostile() as h:
        control = await h.open(CONTROL_PROTOCOL_ID)
        await control.send(hello())
        await control.write(data)
        results = await h.node_results()
        assert results, "the node dropped the peer without sending the Result it queued"
        assert [code_name(r.code) for r in results] == [code_name(code)]


#: Bad adverts, each with a piece of the message that must name the problem.
BAD_ADVERTS: list[tuple[advert_pb2.Advert, str]] = [
    (advert(f"{FOO}@", 101), "path is empty"),
    (advert("@hostile.path", 102), "empty type name"),
    (advert(f"{FOO}@bad path", 103), "white space"),
    (advert(f"{FOO}@robot..temp", 104), "empty segment"),
    (advert("no-type-no-path", 105), "neither a route nor a pattern"),
    (advert(f"{FOO}@hostile.kind", 106, kind=common_pb2.ROUTE_KIND_UNSPECIFIED), "no valid kind"),
    (advert(f"{FOO}@hostile.kind", 107, kind=7), "no valid kind (7)"),
    (
        advert("hostile.*.pattern", 108, kind=common_pb2.ROUTE_KIND_INTEREST),
        "neither a route nor a pattern with a type",
    ),
    (advert(f"{FOO}@" + "a" * 2000, 109), "oversize route"),
    (advert(f"{FOO}@hostile.typed", 110, msg_type="dndm.test.Bar"), "names type"),
]
VALID_ROUTE = "hostile.valid"


async def test_advert_batch_with_bad_adverts_and_one_valid() -> None:
    async with (
        arena() as a,
        a.node.subscribe(VALID_ROUTE, Foo) as wants_valid,
        a.hostile() as h,
        a.node.events() as events,
    ):
        await a.legit_traffic()
        control = await h.handshake()
        valid = advert(f"{FOO}@{VALID_ROUTE}", 1)
        bad = [item for item, _ in BAD_ADVERTS]
        await control.send(adverts(*bad[:5], valid, *bad[5:]))
        # The valid advert took effect: the node opens a data link to us for it...
        stream, opening = await h.accept_link()
        assert opening.route == f"{FOO}@{VALID_ROUTE}"
        # ...and each bad one was counted and reported, naming its problem.
        for _, text in BAD_ADVERTS:
            await next_error(events, ProtocolError, text, h.peer)
        stats = h.session.stats
        assert stats.bad_adverts == len(BAD_ADVERTS)
        assert stats.adverts_received == len(BAD_ADVERTS) + 1
        assert [str(ad.route) for ad in h.session.remote_intents.values()] == [valid.route]
        # The link really works, and the peer was not dropped for the bad ones.
        await stream.send(batch(opening.link_id, 1, [foo("valid")]))
        with trio.fail_after(WAIT):
            assert (await wants_valid.receive()).text == "valid"
        assert h.session.running
        assert stats.protocol_errors == 0
        await a.check_legit()


async def test_advert_with_unspecified_kind_is_answered_malformed_per_spec() -> None:
    """common.proto: an Advert with ROUTE_KIND_UNSPECIFIED is malformed (Result.MALFORMED)."""
    async with arena() as a, a.hostile() as h:
        control = await h.handshake()
        bad = advert(f"{FOO}@hostile.kind", 1, kind=common_pb2.ROUTE_KIND_UNSPECIFIED)
        await control.send(adverts(bad), ping(99))
        results: list[result_pb2.Result] = []
        with trio.fail_after(WAIT):  # the pong comes after the answers to the batch before it
            while (frame := await h.node_control.receive(control_pb2.ControlFrame)) is not None:
                if frame.WhichOneof("body") == "result":
                    results.append(frame.result)
                if frame.WhichOneof("body") == "pong" and frame.pong.nonce == 99:
                    break
        assert h.session.stats.bad_adverts == 1
        assert [code_name(r.code) for r in results] == ["MALFORMED"]


async def test_more_adverts_than_max_remote_adverts() -> None:
    count = MAX_REMOTE_ADVERTS + 24
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        control = await h.handshake()
        await control.send(
            adverts(*(advert(f"{FOO}@hostile.many.{i}", i + 1) for i in range(count)))
        )
        for _ in range(count - MAX_REMOTE_ADVERTS):
            await next_error(events, ProtocolError, "advertised more than the limit", h.peer)
        assert len(h.session.remote_intents) == MAX_REMOTE_ADVERTS
        assert h.session.stats.bad_adverts == count - MAX_REMOTE_ADVERTS
        assert len(recorded(a.node, ProtocolError, "more than the limit")) == (
            count - MAX_REMOTE_ADVERTS
        )
        assert h.session.running
        await a.check_legit()
        # The legitimate peer's own adverts are not limited by the hostile one's.
        async with (
            a.legit.publish("after.flood", Foo) as late,
            a.node.subscribe("after.flood", Foo),
        ):
            with trio.fail_after(WAIT):
                await late.wait_interest()


async def test_refreshing_a_known_advert_at_the_limit_is_not_an_overflow_per_spec() -> None:
    """``register = true`` means register *or refresh*: re-registering a handle the node
    already holds adds nothing, so it must not count against max_remote_adverts."""
    async with arena() as a, a.hostile() as h:
        control = await h.handshake()
        full = [advert(f"{FOO}@hostile.full.{i}", i + 1) for i in range(MAX_REMOTE_ADVERTS)]
        await control.send(adverts(*full))
        refresh = advert(full[0].route, 1, sequence=1000)
        await control.send(adverts(refresh), ping(77))
        with trio.fail_after(WAIT):  # the pong tells that the batch before it was applied
            while (frame := await h.node_control.receive(control_pb2.ControlFrame)) is not None:
                if frame.WhichOneof("body") == "pong" and frame.pong.nonce == 77:
                    break
        assert len(h.session.remote_intents) == MAX_REMOTE_ADVERTS
        assert h.session.stats.bad_adverts == 0, "a refresh of a known handle was refused"
        assert h.session.remote_intents[1].sequence == 1000


# -- 2. the data stream: the node as publisher --------------------------------------------------

DATA_GARBAGE = {
    "length-prefix-longer-than-5-bytes": (b"\xff" * 8, MalformedFrame, "prefix is longer"),
    "not-protobuf": (encode_frame(b"garbage"), MalformedFrame, "is not a valid dndm.v1"),
    "frame-without-body": (encode_frame(b""), MalformedFrame, "has no body"),
    "length-above-limit": (varint(MAX_FRAME_SIZE + 1), FrameTooLarge, "above the limit"),
    "truncated-then-eof": (varint(50) + b"\x12", MalformedFrame, "stream ended inside a frame"),
}


@pytest.mark.parametrize("name", list(DATA_GARBAGE))
async def test_data_stream_garbage_drops_the_stream_only(name: str) -> None:
    data, kind, text = DATA_GARBAGE[name]
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        await stream.write(data)
        if name == "truncated-then-eof":
            await stream.close()
        event = await next_error(events, kind, text, h.peer)
        assert event.error in a.node.errors
        with trio.fail_after(WAIT):
            answer = await stream.until_end(control_pb2.DataFrame)
        assert stream.ended == "eof"
        assert len(answer) == 1
        assert answer[0].result.code in (MALFORMED, FRAME_TOO_LARGE)  # precisely: *_per_spec
        assert h.session.stats.protocol_errors == 1
        assert h.session.running  # only the stream was dropped, not the peer
        await a.check_legit()


@pytest.mark.parametrize(
    "first",
    [
        ack(1, 0, 10),
        batch(1, 1, [foo("x")]),
        data_result(OK, link_id=1),
    ],
    ids=["ack", "batch", "result"],
)
async def test_data_first_frame_not_a_link_open(first: control_pb2.DataFrame) -> None:
    kind = first.WhichOneof("body")
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        await stream.send(first)
        await next_error(events, ProtocolError, f"must start with LinkOpen, not {kind!r}", h.peer)
        with trio.fail_after(WAIT):
            answer = await stream.until_end(control_pb2.DataFrame)
        assert len(answer) == 1
        assert answer[0].result.code != OK
        assert "LinkOpen" in answer[0].result.description
        assert h.session.stats.protocol_errors == 1
        assert h.session.running
        assert not a.outbound(h.peer)
        await a.check_legit()


#: LinkOpens the node must refuse: (frame, error class, text of the error).
BAD_LINK_OPENS = {
    "unknown-route": (link_open(f"{FOO}@nobody.publishes", 5), UnknownRoute, "nobody.publishes"),
    "invalid-route": (link_open("not a route", 5), ProtocolError, "invalid route"),
    "compression-not-offered": (link_open(chosen=99), ProtocolError, "compression 99, not offered"),
    "zero-credit": (link_open(credit=0), ProtocolError, "grants 0 credit"),
    "huge-credit": (link_open(credit=0xFFFFFFFF), ProtocolError, "grants 4294967295 credit"),
    "bad-qos-depth": (link_open(depth=10**9), ProtocolError, "QoS"),
}


@pytest.mark.parametrize("name", list(BAD_LINK_OPENS))
async def test_data_bad_link_open_is_refused(name: str) -> None:
    frame, kind, text = BAD_LINK_OPENS[name]
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        await stream.send(frame)
        await next_error(events, kind, text, h.peer)
        with trio.fail_after(WAIT):
            answer = await stream.until_end(control_pb2.DataFrame)
        assert stream.ended == "eof"
        assert len(answer) == 1
        result = answer[0].result
        if name == "unknown-route":
            assert result.code == UNKNOWN_ROUTE
        else:
            assert result.code not in (OK, UNKNOWN_ROUTE)
        assert h.session.stats.protocol_errors == 1
        assert h.session.running
        assert not a.outbound(h.peer)
        assert all(link.peer != h.peer for link in a.out.interests)
        await a.check_legit()


async def test_link_open_refusal_names_the_link_and_the_frame_per_spec() -> None:
    """wire-protocol.md, Results: a Result that answers a frame has nonce = that frame's
    header.sequence; result.proto: on the data stream, link_id = the link it concerns."""
    async with arena() as a, a.hostile() as h:
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        (sequence,) = await stream.send(link_open(f"{FOO}@no.such.route", 42))
        with trio.fail_after(WAIT):
            answer = await stream.until_end(control_pb2.DataFrame)
        (frame,) = answer
        assert frame.result.code == UNKNOWN_ROUTE
        assert frame.result.link_id == 42, "the refusal does not name the link (link_id = 0)"
        assert frame.result.nonce == sequence, "the refusal's nonce is not the LinkOpen's sequence"


#: What the node must answer on a data stream, per wire-protocol.md: (first bytes, code).
DATA_REFUSALS: dict[str, tuple[bytes, Code]] = {
    **{
        name: (data, FRAME_TOO_LARGE if error is FrameTooLarge else MALFORMED)
        for name, (data, error, _) in DATA_GARBAGE.items()
        if name != "truncated-then-eof"
    },
    "first-frame-an-ack": (encode_message(ack(1, 0, 10)), MALFORMED),
    **{
        name: (encode_message(frame), UNKNOWN_ROUTE if name == "unknown-route" else MALFORMED)
        for name, (frame, _, _) in BAD_LINK_OPENS.items()
    },
}


async def test_data_stream_refusals_are_answered_per_spec() -> None:
    """wire-protocol.md: a length above the limit gets FRAME_TOO_LARGE, a prefix longer than 5
    bytes or an unparsable frame MALFORMED; the publisher refuses a LinkOpen with
    UNKNOWN_ROUTE "when it does not publish the route, MALFORMED for a bad LinkOpen"."""
    async with arena() as a, a.hostile() as h:
        await h.handshake()
        wrong: list[str] = []
        for name, (data, code) in DATA_REFUSALS.items():
            stream = await h.open(DATA_PROTOCOL_ID)
            await stream.write(data)
            with trio.fail_after(WAIT):
                answer = await stream.until_end(control_pb2.DataFrame)
            codes = [code_name(f.result.code) for f in answer]
            if codes != [code_name(code)]:
                wrong.append(f"{name}: {codes} instead of {code_name(code)}")
        assert h.session.running
        assert not wrong, "wrong refusals:\n  " + "\n  ".join(wrong)


async def test_data_thousands_of_streams_beyond_max_links_per_peer() -> None:
    total = 2000
    async with arena() as a, a.hostile() as h, a.node.events(buffer=4 * total) as events:
        await a.legit_traffic()
        await h.handshake()
        accepted: list[FrameStream] = []
        for i in range(MAX_LINKS_PER_PEER):
            stream = await h.open(DATA_PROTOCOL_ID)
            await stream.send(link_open(link_id=i + 1, credit=1))
            accepted.append(stream)
        with trio.fail_after(WAIT):
            await a.out.wait_links(
                lambda links: sum(link.peer == h.peer for link in links) == MAX_LINKS_PER_PEER
            )
        assert a.node.dropped_streams == 0

        async def refused(index: int) -> None:
            try:
                stream = await h.open(DATA_PROTOCOL_ID)
            except StreamFailure:
                # Reset so fast that py-libp2p's negotiation saw the reset before the
                # protocol confirmation it had already received (it checks resets first).
                return
            with trio.fail_after(WAIT):
                frames = await stream.until_end(control_pb2.DataFrame)
            # The node resets it at once, without a frame.  (py-libp2p's yamux sometimes
            # reports a reset as an end of stream: it drops a reset stream's bookkeeping
            # before the reader looks, so "eof" is accepted; node.dropped_streams counts.)
            assert stream.ended in ("reset", "eof")
            assert frames == [], f"extra stream {index} was served"
            await stream.reset()  # free our yamux slot

        extra = total - MAX_LINKS_PER_PEER
        limiter = trio.CapacityLimiter(64)

        async def limited(index: int) -> None:
            async with limiter:
                await refused(index)

        async with trio.open_nursery() as nursery:
            for i in range(extra):
                nursery.start_soon(limited, i)
        assert a.node.dropped_streams == extra
        for _ in range(extra):
            await next_error(events, ProtocolError, f"more than {MAX_LINKS_PER_PEER} links")
        assert len(a.outbound(h.peer)) == MAX_LINKS_PER_PEER
        assert h.session.running
        # The accepted links still carry data (each granted a credit of 1).
        await a.assert_legit_delivered()
        await a.out.send(Foo(text="to-all"))
        with trio.fail_after(WAIT):
            for stream in accepted:
                frame = await stream.receive(control_pb2.DataFrame)
                assert frame is not None
                assert [Foo.FromString(m).text for m in frame.batch.messages] == ["to-all"]
            assert (await a.legit_in.receive()).text == "to-all"
        await a.check_legit()


async def test_data_streams_that_never_open_a_link_count_against_the_limit() -> None:
    """Streams that sent no LinkOpen yet must count against max_links_per_peer too: otherwise a
    peer holds any number of serve_data tasks and buffers open for handshake_timeout each."""
    extra = 8
    async with arena() as a, a.hostile() as h:
        await h.handshake()
        streams: list[FrameStream] = []
        for _ in range(MAX_LINKS_PER_PEER + extra):
            with contextlib.suppress(StreamFailure):  # reset during negotiation: refused
                streams.append(await h.open(DATA_PROTOCOL_ID))
        with trio.move_on_after(3) as scope:
            for stream in streams[MAX_LINKS_PER_PEER:]:
                await stream.until_end(control_pb2.DataFrame)
        assert not scope.cancelled_caught, (
            f"{len(streams)} idle data streams were accepted with max_links_per_peer = "
            f"{MAX_LINKS_PER_PEER} (node.dropped_streams = {a.node.dropped_streams})"
        )
        assert a.node.dropped_streams == extra


async def test_data_stream_without_link_open_times_out_cleanly() -> None:
    """A peer that opens a data stream and sends nothing: after handshake_timeout the node must
    drop that stream with an error, and keep running."""
    async with arena(handshake_timeout=1.0) as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        event = await next_error(events, DndmError, "", h.peer)
        assert "link" in event.detail.lower(), event.detail
        with trio.fail_after(WAIT):
            await stream.until_end(control_pb2.DataFrame)
        assert stream.ended
        assert h.session.running
        await a.check_legit()


ACK_ATTACKS = {
    "ack-for-a-sequence-never-sent": (ack(3, 1000, 1), "ack for sequence 1000, never sent"),
    "credit-overflow": (ack(3, 0, 0xFFFFFFFF), "credit overflow"),
}


@pytest.mark.parametrize("name", list(ACK_ATTACKS))
async def test_data_bad_acks_close_the_link(name: str) -> None:
    bad_ack, text = ACK_ATTACKS[name]
    async with arena() as a, a.hostile() as h, a.node.events() as events:
        await a.legit_traffic()
        await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        await stream.send(link_open(link_id=3, credit=4))
        with trio.fail_after(WAIT):
            await a.out.wait_links(lambda links: any(link.peer == h.peer for link in links))
        await stream.send(bad_ack)
        await next_error(events, ProtocolError, text, h.peer)
        with trio.fail_after(WAIT):
            answer = await stream.until_end(control_pb2.DataFrame)
            await a.out.wait_links(lambda links: all(link.peer != h.peer for link in links))
        assert stream.ended == "eof"
        assert [f.result.code != OK for f in answer if f.WhichOneof("body") == "result"] == [True]
        assert h.session.stats.protocol_errors == 1
        assert h.session.running
        assert not a.outbound(h.peer)
        await a.check_legit()


# -- 2. the data stream: the node as subscriber of a hostile publisher --------------------------

VICTIM = "hostile.victim"
GOOD = "hostile.good"


def _oversize_claim(opening: data_pb2.LinkOpen) -> list[control_pb2.DataFrame]:
    return [
        batch(
            opening.link_id,
            1,
            [],
            compression=common_pb2.COMPRESSION_ZSTD,
            compressed=b"\x28\xb5\x2f\xfd" + b"\x00" * 16,
            uncompressed_size=MAX_FRAME_SIZE + 1,
        )
    ]


#: name -> (frames the hostile publisher sends on the victim link, given its LinkOpen; the error
#: class; a piece of the error's message; the Result code the node answers with (ERROR stands
#: for "ERROR or MALFORMED"); the messages delivered before the failure).
PUBLISHER_ATTACKS: dict[
    str,
    tuple[
        Callable[[data_pb2.LinkOpen], list[control_pb2.DataFrame]],
        type[DndmError],
        str,
        Code,
        list[str],
    ],
] = {
    "malformed-payload": (
        lambda o: [batch(o.link_id, 1, [foo("ok-1"), b"\x0a\x05ab"])],
        MalformedFrame,
        f"is not a valid {FOO}",
        MALFORMED,
        [],
    ),
    "oversize-compressed-size": (
        _oversize_claim,
        FrameTooLarge,
        f"declares {MAX_FRAME_SIZE + 1} bytes",
        FRAME_TOO_LARGE,
        [],
    ),
    "reliable-sequence-gap": (
        lambda o: [batch(o.link_id, 1, [foo("ok-1")]), batch(o.link_id, 5, [foo("ok-5")])],
        ProtocolError,
        "skipped from 1 to 5",
        ERROR,
        ["ok-1"],
    ),
    "wrong-link-id": (
        lambda o: [batch(o.link_id + 1000, 1, [foo("ok-1")])],
        ProtocolError,
        "batch for link",
        ERROR,
        [],
    ),
    "reliable-sequence-gap-at-the-start": (
        lambda o: [batch(o.link_id, 3, [foo("three")])],
        ProtocolError,
        "skipped from 0 to 3",
        ERROR,
        [],
    ),
    "more-messages-than-credit": (
        lambda o: [batch(o.link_id, 1, [foo(str(i)) for i in range(o.initial_credit + 1)])],
        ProtocolError,
        "credit",
        ERROR,
        [],
    ),
    "unexpected-link-open": (
        lambda o: [link_open(NODE_OUT_ROUTE, o.link_id)],
        ProtocolError,
        "unexpected 'open' frame",
        ERROR,
        [],
    ),
}


@pytest.mark.parametrize("name", list(PUBLISHER_ATTACKS))
async def test_hostile_publisher_attacks_one_link(name: str) -> None:
    make_frames, kind, text, code, delivered = PUBLISHER_ATTACKS[name]
    async with (
        arena() as a,
        a.node.subscribe(VICTIM, Foo, reliable=True) as victim,
        a.node.subscribe(GOOD, Foo) as good,
        a.hostile() as h,
        a.node.events() as events,
    ):
        await a.legit_traffic()
        await h.handshake(advert(f"{FOO}@{VICTIM}", 1), advert(f"{FOO}@{GOOD}", 2))
        opened = [await h.accept_link(), await h.accept_link()]
        links = {opening.route: (stream, opening) for stream, opening in opened}
        victim_stream, victim_open = links[f"{FOO}@{VICTIM}"]
        good_stream, good_open = links[f"{FOO}@{GOOD}"]
        victim_link, good_link = victim_open.link_id, good_open.link_id
        with trio.fail_after(WAIT):
            await victim.wait_intent()
        await victim_stream.send(*make_frames(victim_open))
        await next_error(events, kind, text, h.peer)
        # The node closed the link, told us why, and unlinked its subscriber.
        with trio.fail_after(WAIT):
            answer = await victim_stream.until_end(control_pb2.DataFrame)
            await victim.wait_links(lambda links: not links)
        results = [f.result for f in answer if f.WhichOneof("body") == "result"]
        assert [r.link_id for r in results] == [victim_link], results
        assert results[0].code in ({ERROR, MALFORMED} if code == ERROR else {code}), results
        assert h.session.stats.protocol_errors == 1
        got = []
        while victim.stats.queued:
            got.append(victim.receive_nowait().text)
        assert got == delivered
        # Our other link, the session, and the legitimate links keep working.
        assert h.session.running
        await good_stream.send(batch(good_link, 1, [foo("good-1"), foo("good-2")]))
        with trio.fail_after(WAIT):
            assert [m.text for m in await good.receive_batch()] == ["good-1", "good-2"]
        await a.check_legit()


# -- Results with codes this version does not know ----------------------------------------------

UNKNOWN_CODE = 99


@pytest.mark.parametrize("code", [UNKNOWN_CODE, result_pb2.Result.PERMISSION_DENIED])
@pytest.mark.parametrize("where", ["control", "data-to-publisher", "data-from-publisher"])
async def test_result_with_an_unknown_code(where: str, code: int) -> None:
    """wire-protocol.md: "Unknown codes are treated as ERROR".  A peer that sends one (or any
    error code, such as PERMISSION_DENIED, a case the fuzzer found crashing the node) must cost
    at most its stream or its link, never the node."""
    async with (
        arena() as a,
        a.node.subscribe(GOOD, Foo),
        a.hostile() as h,
        a.node.events() as events,
    ):
        await a.legit_traffic()
        unknown = result_pb2.Result(description="from the future")
        unknown.code = code  # type: ignore[assignment]
        if where == "control":
            control = await h.handshake()
            await control.send(control_pb2.ControlFrame(result=unknown))
        elif where == "data-to-publisher":
            await h.handshake()
            stream = await h.open(DATA_PROTOCOL_ID)
            await stream.send(link_open(link_id=5))
            with trio.fail_after(WAIT):
                await a.out.wait_links(lambda links: any(link.peer == h.peer for link in links))
            await stream.send(control_pb2.DataFrame(result=unknown))
        else:
            await h.handshake(advert(f"{FOO}@{GOOD}", 1))
            stream, _ = await h.accept_link()
            await stream.send(control_pb2.DataFrame(result=unknown))
        await next_error(events, DndmError, "", h.peer)
        await a.check_legit()
        assert not a.node.router.closed


# -- peers that come and go ---------------------------------------------------------------------


async def test_peers_that_come_and_go_leave_no_task_behind() -> None:
    """Every inbound connection must give back what it took once it closed.  py-libp2p 0.8.1
    keeps the listener task of each inbound connection, and its slot of the inbound limit
    (max_connections = 300), until the host stops: after 300 peers came and went, the node
    refuses every new connection, legitimate ones included."""
    async with arena() as a:
        swarm = a.node.host.get_network()
        limiter = getattr(swarm, "_inbound_limiter", None)
        borrowed = limiter.borrowed_tokens if limiter is not None else 0
        await trio.testing.wait_all_tasks_blocked()
        before = live_tasks()
        for _ in range(5):
            async with a.hostile() as h:
                await h.handshake()
            with trio.fail_after(WAIT):
                await h.session.ended.wait()
        leaked = await settled_new_tasks(before, ignore=is_libp2p_inbound_handler)
        handlers = [task for task in live_tasks() - before if is_libp2p_inbound_handler(task)]
        await a.check_legit()
        assert not handlers, f"{len(handlers)} inbound connection tasks outlived their peers"
        if limiter is not None:
            assert limiter.borrowed_tokens == borrowed, (
                f"{limiter.borrowed_tokens - borrowed} inbound connection slots of "
                f"{limiter.total_tokens} are still taken by peers that left"
            )
        assert not leaked, f"tasks left by peers that left: {sorted(t.name for t in leaked)}"


# -- 3. a subscriber that stops reading ---------------------------------------------------------


async def test_subscriber_that_never_reads_nor_acks() -> None:
    credit = 64
    total = 2000
    text = secrets.token_hex(1024)  # 2 KiB, incompressible: credit * size < the yamux window
    async with arena() as a, a.hostile() as h:
        await a.legit_traffic()
        control = await h.handshake()
        stream = await h.open(DATA_PROTOCOL_ID)
        await stream.send(link_open(link_id=11, credit=credit, depth=32))
        with trio.fail_after(WAIT):
            await a.out.wait_links(lambda links: any(link.peer == h.peer for link in links))
        await a.assert_legit_delivered()

        got: list[str] = []

        async def produce() -> None:
            for i in range(total):
                await a.out.send(Foo(text=f"{i}:{text}"))

        async def consume() -> None:
            while len(got) < total:
                got.extend(m.text.split(":")[0] for m in await a.legit_in.receive_batch())

        # The hostile link holds no one back: the producer (paced by the reliable legitimate
        # subscriber only) and the legitimate subscriber both finish.
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                nursery.start_soon(consume)
        assert got == [str(i) for i in range(total)]
        (link,) = a.outbound(h.peer)
        assert link.sent == credit, "the writer sent more than the credit"
        assert link.credit == 0
        assert link.queue.dropped > 0, "the hostile link's queue should have dropped"
        # Nothing was reset: the session, its control stream and the data stream still work.
        assert h.session.running
        await control.send(ping(4242))
        with trio.fail_after(WAIT):
            while (frame := await h.node_control.receive(control_pb2.ControlFrame)) is not None:
                if frame.WhichOneof("body") == "pong" and frame.pong.nonce == 4242:
                    break
        assert frame is not None, "the node's control stream ended"
        received: list[control_pb2.DataFrame] = []
        with trio.fail_after(WAIT):
            while sum(len(f.batch.messages) for f in received) < credit:
                frame2 = await stream.receive(control_pb2.DataFrame)
                assert frame2 is not None, f"the data stream ended ({stream.ended})"
                received.append(frame2)
        assert sum(len(f.batch.messages) for f in received) == credit
        assert received[0].batch.first_sequence == 1
        # Granting credit again resumes the link, with the drops reported.
        await stream.send(ack(11, credit, 8))
        with trio.fail_after(WAIT):
            more = await stream.receive(control_pb2.DataFrame)
        assert more is not None
        received.append(more)
        assert more.batch.first_sequence == credit + 1
        assert len(more.batch.messages) == 8
        assert sum(f.batch.dropped_since_last for f in received) == link.queue.dropped
        await a.check_legit()
