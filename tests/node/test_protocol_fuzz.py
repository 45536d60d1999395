"""Hypothesis fuzzing of both dndm protocols against a running node.

Each example is written by a fresh hostile peer (see ``tests/node/test_hostile_peers.py``) on a
fresh stream: random ``ControlFrame`` / ``DataFrame`` messages built over every oneof body with
random field values (routes are random strings, mixed with routes the node really publishes or
subscribes to, so that examples also reach the deeper states), random raw byte strings, and
random frame bodies.  After each example the node must still run, a legitimate link must still
deliver, the hostile peer's session must end once it leaves, and no task may be left behind
(apart from bounded timers and a py-libp2p leak pinned in test_hostile_peers.py).  Inputs this
fuzzer found to break the node run first in every test, as explicit examples.

One node pair serves all examples of a test: the test runs in trio, hands hypothesis to a
worker thread (``trio.to_thread``), and each example runs back in the trio thread
(``trio.from_thread.run``).  Examples are bounded (``MAX_EXAMPLES`` each, no deadline).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from dndm_p2p.errors import WouldBlock
from protocols.framing import encode_frame, encode_message
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID, MAX_FRAME_SIZE
from protocols.v1 import (
    advert_pb2,
    common_pb2,
    control_pb2,
    data_pb2,
    hello_pb2,
    ping_pb2,
    result_pb2,
)
from tests.proto.messages_pb2 import Foo
from tests.support.hostile import (
    FOO,
    WAIT,
    Arena,
    Hostile,
    advert,
    arena,
    hello,
    hostile_peer,
    is_libp2p_inbound_handler,
    settled_new_tasks,
    varint,
)
from tests.support.trio_checks import live_tasks

#: Background work that outlives an example by design, bounded by the node's configuration:
#: a reliable link whose subscriber left waits ``reliable_grace`` for it to come back.
BOUNDED_TIMERS = ("LinkRegistry._expire_parked",)

M = TypeVar("M")

MAX_EXAMPLES = 60
#: Routes the node publishes / subscribes to, which hostile examples may name.
FUZZ_PUB = "fuzz.pub"
FUZZ_SUB = "fuzz.sub"
FUZZ_PUB_ROUTE = f"{FOO}@{FUZZ_PUB}"
FUZZ_SUB_ROUTE = f"{FOO}@{FUZZ_SUB}"

#: No shrinking: the examples share one node, and after a failure that broke the node every
#: shrink step would fail for that reason alone.  Each example also takes one of the node's
#: inbound connection slots for good (a py-libp2p 0.8.1 leak, see test_hostile_peers.py), so
#: the examples of a test must stay well below max_connections (300).
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------

u32 = st.one_of(st.integers(0, 16), st.integers(0, 2**32 - 1))
u64 = st.one_of(st.integers(0, 16), st.integers(0, 2**64 - 1))
small_bytes = st.binary(max_size=48)
text = st.text(max_size=40)
#: Any int32: proto3 enums are open, so unknown values reach the node as they are.
enum = st.one_of(st.integers(0, 12), st.integers(-(2**31), 2**31 - 1))

routes = st.one_of(
    st.sampled_from(
        [
            FUZZ_PUB_ROUTE,
            FUZZ_SUB_ROUTE,
            f"{FOO}@fuzz.other",
            "dndm.test.Bar@fuzz.pub",
            "fuzz.*",
            "fuzz.**",
            "prefix#" + "A" * 43,
            "",
            "@",
            "#",
            f"{FOO}@" + "a" * 1100,
        ]
    ),
    text,
    st.builds(
        "{}@{}".format,
        st.sampled_from([FOO, "dndm.test.Bar", "", "a b", "x..y"]),
        st.text(max_size=30),
    ),
)
type_names = st.one_of(st.sampled_from(["", FOO, "dndm.test.Bar", "not a type"]), text)

headers = st.builds(
    common_pb2.Header,
    timestamp_us=u64,
    sequence=u64,
    route=routes,
    flags=u32,
    signature=small_bytes,
    signer_public_key=small_bytes,
)
qos = st.builds(common_pb2.QoS, depth=u32, overflow=enum, reliable=st.booleans())
capabilities = st.builds(
    common_pb2.Capabilities,
    compression=st.lists(enum, max_size=4),
    reliability=st.booleans(),
    max_frame_size=u32,
    max_batch_messages=u32,
)
adverts = st.builds(
    advert_pb2.Advert,
    route=routes,
    msg_type=type_names,
    kind=enum,
    register=st.booleans(),
    ttl_ms=u64,
    sequence=u64,
    qos=qos,
    handle_id=u64,
)
hellos = st.builds(
    hello_pb2.Hello,
    protocol_version=st.one_of(st.just(1), u32),
    node_name=text,
    capabilities=capabilities,
    intents=st.lists(adverts, max_size=4),
    interests=st.lists(adverts, max_size=4),
    sent_us=u64,
)
advert_batches = st.builds(
    advert_pb2.AdvertBatch, header=headers, adverts=st.lists(adverts, max_size=8)
)
pings = st.builds(ping_pb2.Ping, nonce=u64, sent_us=u64, payload=small_bytes)
pongs = st.builds(
    ping_pb2.Pong,
    nonce=u64,
    ping_sent_us=u64,
    received_us=u64,
    sent_us=u64,
    payload=small_bytes,
)
results = st.builds(
    result_pb2.Result,
    nonce=u64,
    code=enum,
    description=text,
    transient=st.booleans(),
    link_id=u64,
)

pytestmark = pytest.mark.slow  # three hypothesis runs against a live node, ~15 s each


def _control(body: str, strategy: SearchStrategy[Any]) -> SearchStrategy[control_pb2.ControlFrame]:
    return st.builds(
        lambda header, value: control_pb2.ControlFrame(header=header, **{body: value}),
        headers,
        strategy,
    )


control_frames = st.one_of(
    _control("hello", hellos),
    _control("adverts", advert_batches),
    _control("ping", pings),
    _control("pong", pongs),
    _control("result", results),
    st.builds(lambda header: control_pb2.ControlFrame(header=header), headers),  # no body
)

messages = st.one_of(
    st.builds(lambda t: Foo(text=t).SerializeToString(), text),
    st.binary(max_size=64),
)
link_opens = st.builds(
    data_pb2.LinkOpen,
    route=routes,
    link_id=u64,
    qos=qos,
    chosen=enum,
    initial_credit=u32,
    resume_after=u64,
)
#: LinkOpens the node accepts, so that the frames after them reach a live link.
valid_link_opens = st.builds(
    data_pb2.LinkOpen,
    route=st.just(FUZZ_PUB_ROUTE),
    link_id=st.integers(1, 2**64 - 1),
    qos=st.builds(
        common_pb2.QoS,
        depth=st.integers(1, 64),
        overflow=st.sampled_from([0, 1, 2]),
        reliable=st.booleans(),
    ),
    chosen=st.sampled_from([0, 1, 2]),
    initial_credit=st.integers(1, 100),
    resume_after=st.integers(0, 3),
)
data_batches = st.builds(
    data_pb2.DataBatch,
    link_id=u64,
    first_sequence=u64,
    messages=st.lists(messages, max_size=6),
    timestamps_us=st.lists(u64, max_size=6),
    compression=enum,
    compressed=small_bytes,
    dropped_since_last=u32,
    uncompressed_size=st.one_of(u32, st.just(MAX_FRAME_SIZE + 1)),
)
acks = st.builds(data_pb2.Ack, link_id=u64, cumulative_sequence=u64, credit=u32, dropped=u32)


def _data(body: str, strategy: SearchStrategy[Any]) -> SearchStrategy[control_pb2.DataFrame]:
    return st.builds(
        lambda header, value: control_pb2.DataFrame(header=header, **{body: value}),
        headers,
        strategy,
    )


data_frames = st.one_of(
    _data("open", st.one_of(valid_link_opens, link_opens)),
    _data("batch", data_batches),
    _data("ack", acks),
    _data("result", results),
    st.builds(lambda header: control_pb2.DataFrame(header=header), headers),  # no body
)


def chunks(frames: SearchStrategy[Any]) -> SearchStrategy[bytes]:
    """What a hostile peer writes in one go: a frame, raw bytes, or a random frame body."""
    return st.one_of(
        frames.map(encode_message),
        frames.map(encode_message),
        st.binary(max_size=200),
        st.binary(max_size=200).map(encode_frame),
        st.builds(lambda n, tail: varint(n) + tail, u64, st.binary(max_size=16)),
    )


def writes(
    frames: SearchStrategy[Any], first: SearchStrategy[bytes] | None = None
) -> SearchStrategy[list[bytes]]:
    """A stream's content: maybe a valid first frame, then 1 to 5 chunks."""
    tail = st.lists(chunks(frames), min_size=1, max_size=5)
    if first is None:
        return tail
    return st.builds(lambda head, rest: [*head, *rest], st.lists(first, max_size=1), tail)


valid_hello = st.just(encode_message(hello()))
valid_open = valid_link_opens.map(lambda o: encode_message(control_pb2.DataFrame(open=o)))
#: A valid DataBatch for the link the node opened, with its link id filled in by the example.
batches_for_link = st.builds(
    lambda first, msgs: data_pb2.DataBatch(first_sequence=first, messages=msgs),
    st.integers(0, 6),
    st.lists(messages, max_size=4),
)

#: Regressions this fuzzer found: a Result with a code this version does not know (99) crashed
#: the node (``Result.Code.Name`` raises ValueError); see test_result_with_an_unknown_code.
UNKNOWN_RESULT = result_pb2.Result(description="found by the fuzzer")
UNKNOWN_RESULT.code = 99  # type: ignore[assignment]
UNKNOWN_RESULT_CONTROL = control_pb2.ControlFrame(result=UNKNOWN_RESULT)
UNKNOWN_RESULT_DATA = encode_message(control_pb2.DataFrame(result=UNKNOWN_RESULT))

# -- running examples ---------------------------------------------------------------------------


class Fuzz:
    """The node pair shared by the examples of one test, and the per-example checks."""

    def __init__(self, a: Arena) -> None:
        self.a = a
        self.examples = 0

    async def run(self, attack: Callable[[Hostile], Awaitable[None]]) -> None:
        """One example: a fresh hostile peer runs ``attack``; then check the node."""
        a = self.a
        await trio.testing.wait_all_tasks_blocked()
        before = live_tasks()
        async with hostile_peer(a.node) as hostile:
            await attack(hostile)
            assert a.node.session(a.legit.peer_id) is not None, "the legitimate peer was dropped"
            await a.check_legit(1)
        # The hostile peer left: its session ends, and nothing of it stays behind.
        with trio.fail_after(WAIT):
            await hostile.session.ended.wait()
        leaked = await settled_new_tasks(
            before, ignore=lambda t: t.name.endswith(BOUNDED_TIMERS) or is_libp2p_inbound_handler(t)
        )
        assert not leaked, f"tasks leaked by the example: {sorted(t.name for t in leaked)}"
        assert not a.node.router.closed
        self.examples += 1

    def hypothesis(
        self,
        strategy: SearchStrategy[M],
        check: Callable[[M], Awaitable[None]],
        *explicit: M,
    ) -> Callable[[], None]:
        """A sync hypothesis test that runs each example in the trio thread; ``explicit``
        examples (regressions) run first."""

        def examples(value: M) -> None:
            trio.from_thread.run(check, value)

        test = given(strategy)(examples)
        for value in reversed(explicit):
            test = example(value)(test)
        return FUZZ(test)


async def _write_all(stream: Any, content: list[bytes]) -> None:
    for chunk in content:
        await stream.write(chunk)
    await stream.close()


async def test_fuzz_control_stream() -> None:
    async with arena(reliable_grace=0.5) as a, a.node.subscribe(FUZZ_SUB, Foo):
        fuzz = Fuzz(a)

        async def check(content: list[bytes]) -> None:
            async def attack(h: Hostile) -> None:
                control = await h.open(CONTROL_PROTOCOL_ID)
                await _write_all(control, content)
                # Whatever it was, it ends the session: with an error saying why, or, when a
                # valid Hello was followed by a clean end of stream, as a peer leaving in order.
                with trio.fail_after(WAIT):
                    await h.session.ended.wait()
                if h.session.error is None:
                    assert h.session.hello_received.is_set()
                else:
                    assert h.session.error in a.node.errors

            await fuzz.run(attack)

        strategy = writes(control_frames, valid_hello)
        found = [encode_message(hello()), encode_message(UNKNOWN_RESULT_CONTROL)]
        await trio.to_thread.run_sync(fuzz.hypothesis(strategy, check, found))
        assert fuzz.examples >= MAX_EXAMPLES


async def test_fuzz_data_stream_to_a_publisher() -> None:
    async with arena(reliable_grace=0.5) as a, a.node.publish(FUZZ_PUB, Foo) as pub:
        fuzz = Fuzz(a)

        async def check(content: list[bytes]) -> None:
            async def attack(h: Hostile) -> None:
                await h.handshake()
                stream = await h.open(DATA_PROTOCOL_ID)
                await _write_all(stream, content)
                with contextlib.suppress(WouldBlock):  # for a link the example opened
                    pub.send_nowait(Foo(text="fuzz"))
                # The node ends the stream: the example's frames are refused, or our end of
                # the stream ends the link.
                with trio.fail_after(WAIT):
                    await stream.until_end(control_pb2.DataFrame)
                assert h.session.running, "a data stream's content ended the whole session"

            await fuzz.run(attack)

        opening = data_pb2.LinkOpen(route=FUZZ_PUB_ROUTE, link_id=1, initial_credit=1)
        found = [encode_message(control_pb2.DataFrame(open=opening)), UNKNOWN_RESULT_DATA]
        strategy = writes(data_frames, valid_open)
        await trio.to_thread.run_sync(fuzz.hypothesis(strategy, check, found))
        assert fuzz.examples >= MAX_EXAMPLES


async def test_fuzz_data_stream_from_a_publisher() -> None:
    """The node subscribes to the hostile peer's intent and reads what it sends."""
    async with arena(reliable_grace=0.5) as a, a.node.subscribe(FUZZ_SUB, Foo) as sub:
        fuzz = Fuzz(a)
        strategy = st.tuples(st.lists(batches_for_link, max_size=3), writes(data_frames))

        async def check(example: tuple[list[data_pb2.DataBatch], list[bytes]]) -> None:
            good, content = example

            async def attack(h: Hostile) -> None:
                await h.handshake(advert(FUZZ_SUB_ROUTE, 1))
                stream, opening = await h.accept_link()
                for item in good:
                    frame = control_pb2.DataFrame(batch=item)  # a copy
                    frame.batch.link_id = opening.link_id
                    await stream.send(frame)
                await _write_all(stream, content)
                with trio.fail_after(WAIT):
                    await stream.until_end(control_pb2.DataFrame)
                    await sub.wait_links(lambda links: not links)
                while sub.stats.queued:
                    sub.receive_nowait()
                assert h.session.running, "a data stream's content ended the whole session"

            await fuzz.run(attack)

        found: tuple[list[data_pb2.DataBatch], list[bytes]] = ([], [UNKNOWN_RESULT_DATA])
        await trio.to_thread.run_sync(fuzz.hypothesis(strategy, check, found))
        assert fuzz.examples >= MAX_EXAMPLES
