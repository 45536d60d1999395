"""A hostile libp2p peer against a real node: frames written by hand on DNDM's streams, the
node's errors and tasks observed."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import trio
import trio.testing
from google.protobuf.message import Message
from libp2p.abc import INotifee
from libp2p.custom_types import TProtocol

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.host.build import HostConfig, connect, running_host
from dndm_p2p.host.identity import generate_identity
from dndm_p2p.node.node import Node, NodeEvent
from dndm_p2p.node.outbound import OutboundLink
from dndm_p2p.node.session import PeerSession
from protocols.errors import (
    ConnectionLost,
    DndmError,
)
from protocols.framing import FrameReader, encode_message, read_message
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
    hello_pb2,
    ping_pb2,
    result_pb2,
)
from tests.proto.messages_pb2 import Foo
from tests.support.trio_checks import live_tasks

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn, INetStream, INetwork
    from libp2p.peer.id import ID

M = TypeVar("M", bound=Message)
Frame: TypeAlias = control_pb2.ControlFrame | control_pb2.DataFrame
Code: TypeAlias = result_pb2.Result.Code.ValueType

#: Bound of every wait on the node (generous: nothing here should take more than a fraction).
WAIT = 10.0
#: Messages sent on each legitimate link before and after each attack.
N = 50
FOO = "dndm.test.Foo"
#: The route the node under test publishes (a legitimate node and hostile peers subscribe).
NODE_OUT = "node.out"
NODE_OUT_ROUTE = f"{FOO}@{NODE_OUT}"
#: The route the legitimate node publishes and the node under test subscribes to.
LEGIT_OUT = "legit.out"
#: Limits lowered so that exceeding them stays fast.
MAX_REMOTE_ADVERTS = 16
MAX_LINKS_PER_PEER = 32
NODE_CONFIG: dict[str, Any] = {
    "ping_interval": 1.0,
    "ping_timeout": 30.0,
    "max_remote_adverts": MAX_REMOTE_ADVERTS,
    "max_links_per_peer": MAX_LINKS_PER_PEER,
}

OK = result_pb2.Result.OK
ERROR = result_pb2.Result.ERROR
UNKNOWN_ROUTE = result_pb2.Result.UNKNOWN_ROUTE
FRAME_TOO_LARGE = result_pb2.Result.FRAME_TOO_LARGE
MALFORMED = result_pb2.Result.MALFORMED
VERSION_MISMATCH = result_pb2.Result.VERSION_MISMATCH


# -- frames -------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """``n`` as an unsigned LEB128 varint (any length, unlike the framing layer's)."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def hello(version: int = PROTOCOL_VERSION, **fields: Any) -> control_pb2.ControlFrame:
    """A ControlFrame with a Hello (a valid one unless told otherwise)."""
    fields.setdefault("node_name", "hostile")
    fields.setdefault("capabilities", common_pb2.Capabilities(reliability=True))
    return control_pb2.ControlFrame(hello=hello_pb2.Hello(protocol_version=version, **fields))


def advert(
    route: str,
    handle_id: int,
    *,
    kind: int = common_pb2.ROUTE_KIND_INTENT,
    msg_type: str = "",
    register: bool = True,
    sequence: int | None = None,
) -> advert_pb2.Advert:
    """An advert of the hostile peer (sequence = handle id unless given)."""
    return advert_pb2.Advert(
        route=route,
        msg_type=msg_type,
        kind=kind,  # type: ignore[arg-type]  # deliberately also invalid kinds
        register=register,
        sequence=handle_id if sequence is None else sequence,
        handle_id=handle_id,
    )


def adverts(*items: advert_pb2.Advert) -> control_pb2.ControlFrame:
    """A ControlFrame with an AdvertBatch."""
    return control_pb2.ControlFrame(adverts=advert_pb2.AdvertBatch(adverts=items))


def ping(nonce: int) -> control_pb2.ControlFrame:
    """A ControlFrame with a Ping."""
    return control_pb2.ControlFrame(ping=ping_pb2.Ping(nonce=nonce, sent_us=1))


def link_open(
    route: str = NODE_OUT_ROUTE,
    link_id: int = 1,
    *,
    credit: int = 8,
    chosen: int = common_pb2.COMPRESSION_NONE,
    depth: int = 32,
) -> control_pb2.DataFrame:
    """A DataFrame with a LinkOpen (an unreliable, drop-oldest link unless told otherwise)."""
    return control_pb2.DataFrame(
        open=data_pb2.LinkOpen(
            route=route,
            link_id=link_id,
            qos=common_pb2.QoS(depth=depth),
            chosen=chosen,  # type: ignore[arg-type]  # deliberately also unknown values
            initial_credit=credit,
        )
    )


def batch(
    link_id: int, first: int, messages: Sequence[bytes], **fields: Any
) -> control_pb2.DataFrame:
    """A DataFrame with a DataBatch."""
    return control_pb2.DataFrame(
        batch=data_pb2.DataBatch(link_id=link_id, first_sequence=first, messages=messages, **fields)
    )


def foo(text: str) -> bytes:
    """A serialized Foo."""
    return Foo(text=text).SerializeToString()


def ack(link_id: int, cumulative: int, credit: int) -> control_pb2.DataFrame:
    """A DataFrame with an Ack."""
    return control_pb2.DataFrame(
        ack=data_pb2.Ack(link_id=link_id, cumulative_sequence=cumulative, credit=credit)
    )


def data_result(code: Code, link_id: int = 0, nonce: int = 0) -> control_pb2.DataFrame:
    """A DataFrame with a Result."""
    return control_pb2.DataFrame(
        result=result_pb2.Result(code=code, link_id=link_id, nonce=nonce, description="hostile")
    )


def code_name(code: int) -> str:
    """Readable Result code."""
    try:
        return result_pb2.Result.Code.Name(code)  # type: ignore[arg-type]
    except ValueError:
        return str(code)


# -- the hostile peer ---------------------------------------------------------------------------


class FrameStream:
    """A libp2p stream of the hostile peer, with a frame reader on it."""

    def __init__(self, stream: INetStream, max_size: int = MAX_FRAME_SIZE) -> None:
        self.stream = stream
        self.reader = FrameReader(stream, max_size)
        self.sequence = 0
        #: How the stream ended for our reads: "eof", "reset" (or broken), or "" if not yet.
        self.ended = ""

    async def write(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.write(data)

    async def send(self, *frames: Frame) -> list[int]:
        """Write frames in one write, numbering their headers; return their sequence numbers."""
        parts: list[bytes] = []
        sequences: list[int] = []
        for frame in frames:
            if not frame.header.sequence:
                self.sequence += 1
                frame.header.sequence = self.sequence
            sequences.append(frame.header.sequence)
            parts.append(encode_message(frame))
        await self.stream.write(b"".join(parts))
        return sequences

    async def receive(self, message_type: type[M]) -> M | None:
        """The next frame; ``None`` at the end of the stream (see :attr:`ended`)."""
        try:
            frame = await read_message(self.reader, message_type)
        except ConnectionLost:
            self.ended = "reset"
            return None
        if frame is None:
            self.ended = "eof"
        return frame

    async def until_end(self, message_type: type[M]) -> list[M]:
        """Every frame until the node ends the stream (bounded by the caller)."""
        frames: list[M] = []
        while (frame := await self.receive(message_type)) is not None:
            frames.append(frame)
        return frames

    async def close(self) -> None:
        """Half-close: the node reads the end of the stream."""
        await self.stream.close()

    async def reset(self) -> None:
        """Reset the stream (frees its yamux slot)."""
        await self.stream.reset()


class _Disconnects(INotifee):
    """Sets an event when the hostile host loses its connection to the node."""

    def __init__(self) -> None:
        self.gone = trio.Event()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """Not used."""

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """The node dropped us (or we left)."""
        self.gone.set()

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""


@dataclass
class Hostile:
    """A connected hostile peer (see the module docstring)."""

    host: IHost
    node: Node
    node_id: ID
    #: The control stream the node opened to us, after the node's Hello was read from it.
    node_control: FrameStream
    #: The node's Hello.
    node_hello: hello_pb2.Hello
    #: The node's session with us.
    session: PeerSession
    #: Data streams the node opened to us (it subscribes to an intent we advertised).
    incoming_data: trio.MemoryReceiveChannel[INetStream]
    watcher: _Disconnects

    @property
    def peer(self) -> str:
        """Our peer id, as the node names us."""
        return str(self.host.get_id())

    async def open(self, protocol: str) -> FrameStream:
        """Open a stream of ``protocol`` to the node."""
        with trio.fail_after(WAIT):
            stream = await self.host.new_stream(self.node_id, [TProtocol(protocol)])
        size = MAX_CONTROL_FRAME_SIZE if protocol == CONTROL_PROTOCOL_ID else MAX_FRAME_SIZE
        return FrameStream(stream, size)

    async def handshake(self, *intents: advert_pb2.Advert) -> FrameStream:
        """Open our control stream and send a valid Hello with ``intents``; wait until applied."""
        control = await self.open(CONTROL_PROTOCOL_ID)
        await control.send(hello(intents=intents))
        with trio.fail_after(WAIT):
            await self.session.hello_received.wait()
        return control

    async def accept_link(self) -> tuple[FrameStream, data_pb2.LinkOpen]:
        """The next data stream the node opens to us, and its LinkOpen."""
        with trio.fail_after(WAIT):
            stream = FrameStream(await self.incoming_data.receive())
            frame = await stream.receive(control_pb2.DataFrame)
        assert frame is not None, "the node opened a data stream but sent no LinkOpen"
        assert frame.WhichOneof("body") == "open", frame
        return stream, frame.open

    async def node_results(self) -> list[result_pb2.Result]:
        """The Results the node sent on its control stream, until it ended the stream."""
        with trio.fail_after(WAIT):
            frames = await self.node_control.until_end(control_pb2.ControlFrame)
        return [f.result for f in frames if f.WhichOneof("body") == "result"]

    async def wait_dropped(self) -> None:
        """Wait until the node ended our session and dropped the connection."""
        with trio.fail_after(WAIT):
            await self.session.ended.wait()
            await self.watcher.gone.wait()


@asynccontextmanager
async def hostile_peer(node: Node) -> AsyncIterator[Hostile]:
    """A hostile host connected to ``node``, with the node's Hello already read."""
    control_in, control_out = trio.open_memory_channel[Any](math.inf)
    data_in, data_out = trio.open_memory_channel[Any](math.inf)

    async def on_control(stream: INetStream) -> None:
        control_in.send_nowait(stream)

    async def on_data(stream: INetStream) -> None:
        data_in.send_nowait(stream)

    async with running_host(generate_identity(), HostConfig()) as host:
        watcher = _Disconnects()
        host.get_network().register_notifee(watcher)
        host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), on_control)
        host.set_stream_handler(TProtocol(DATA_PROTOCOL_ID), on_data)
        with trio.fail_after(WAIT):
            node_id = await connect(host, node.addrs[0])
            node_control = FrameStream(await control_out.receive(), MAX_CONTROL_FRAME_SIZE)
            first = await node_control.receive(control_pb2.ControlFrame)
        assert first is not None
        assert first.WhichOneof("body") == "hello"
        session = node.session(str(host.get_id()))
        assert session is not None
        yield Hostile(host, node, node_id, node_control, first.hello, session, data_out, watcher)


# -- the node under test and its legitimate peer ------------------------------------------------


@dataclass
class Arena:
    """The node under test, a legitimate peer, and one legitimate link each way."""

    node: Node
    legit: Node
    #: The node's intent on NODE_OUT, and the legitimate subscriber of it.
    out: Intent[Foo]
    legit_in: Interest[Foo]
    #: The legitimate peer's intent on LEGIT_OUT, and the node's subscription to it.
    legit_out: Intent[Foo]
    node_in: Interest[Foo]
    sent_out: int = 0
    sent_in: int = 0
    got_out: list[str] = field(default_factory=list)
    got_in: list[str] = field(default_factory=list)

    async def legit_traffic(self, count: int = N) -> None:
        """Send ``count`` messages on each legitimate link (received later)."""
        with trio.fail_after(WAIT):
            for _ in range(count):
                await self.out.send(Foo(text=f"out-{self.sent_out}"))
                self.sent_out += 1
                await self.legit_out.send(Foo(text=f"in-{self.sent_in}"))
                self.sent_in += 1

    async def assert_legit_delivered(self) -> None:
        """Every message sent on the legitimate links so far arrived, once, in order."""
        with trio.fail_after(WAIT):
            while len(self.got_out) < self.sent_out:
                self.got_out.extend(m.text for m in await self.legit_in.receive_batch())
            while len(self.got_in) < self.sent_in:
                self.got_in.extend(m.text for m in await self.node_in.receive_batch())
        assert self.got_out == [f"out-{i}" for i in range(self.sent_out)]
        assert self.got_in == [f"in-{i}" for i in range(self.sent_in)]

    async def check_legit(self, count: int = N) -> None:
        """Send ``count`` more messages each way; all messages so far must arrive."""
        await self.legit_traffic(count)
        await self.assert_legit_delivered()

    def hostile(self) -> AbstractAsyncContextManager[Hostile]:
        """A hostile peer connected to the node."""
        return hostile_peer(self.node)

    def outbound(self, peer: str) -> list[OutboundLink]:
        """The node's links to ``peer``'s subscriptions."""
        session = self.node.session(peer)
        return [] if session is None else list(session.outbound)


@asynccontextmanager
async def arena(**config: Any) -> AsyncIterator[Arena]:
    """The node under test (``config`` overrides NODE_CONFIG) and a legitimate peer, linked."""
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            Node(NodeConfig(name="node", **{**NODE_CONFIG, **config}))
        )
        legit = await stack.enter_async_context(
            Node(NodeConfig(name="legit", ping_interval=1.0, ping_timeout=30.0))
        )
        out = await stack.enter_async_context(node.publish(NODE_OUT, Foo))
        legit_in = await stack.enter_async_context(
            legit.subscribe(NODE_OUT, Foo, reliable=True, depth=256)
        )
        legit_out = await stack.enter_async_context(legit.publish(LEGIT_OUT, Foo))
        node_in = await stack.enter_async_context(
            node.subscribe(LEGIT_OUT, Foo, reliable=True, depth=256)
        )
        with trio.fail_after(WAIT):
            await legit.connect(node.addrs[0])
            await out.wait_interest()
            await legit_out.wait_interest()
        yield Arena(node, legit, out, legit_in, legit_out, node_in)


async def next_error(
    events: trio.MemoryReceiveChannel[NodeEvent],
    kind: type[DndmError],
    text: str,
    peer: str | None = None,
) -> NodeEvent:
    """Wait for an error event of ``kind`` whose message contains ``text``."""
    with trio.fail_after(WAIT):
        async for event in events:
            if (
                event.kind == "error"
                and isinstance(event.error, kind)
                and text in event.detail
                and (peer is None or event.peer == peer)
            ):
                return event
    raise AssertionError(f"the event stream ended before a {kind.__name__} naming {text!r}")


def recorded(node: Node, kind: type[DndmError], text: str) -> list[DndmError]:
    """The errors in ``node.errors`` of ``kind`` whose message contains ``text``."""
    return [e for e in node.errors if isinstance(e, kind) and text in str(e)]


def is_libp2p_inbound_handler(task: trio.lowlevel.Task) -> bool:
    """The listener task py-libp2p 0.8.1 keeps for every inbound connection until the host
    stops (swarm.py ``_do_handle_inbound_connection`` awaits ``manager.wait_finished()``, and
    only then releases the connection's inbound slot); see
    :func:`test_peers_that_come_and_go_leave_no_task_behind`."""
    names = [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
    return "_do_handle_inbound_connection" in names and "wait_finished" in names


async def settled_new_tasks(
    before: set[trio.lowlevel.Task],
    ignore: Callable[[trio.lowlevel.Task], bool] = lambda task: False,
) -> set[trio.lowlevel.Task]:
    """Tasks started since ``before`` (and not ignored) still alive once everything settled.

    Closing a connection takes py-libp2p a few scheduling rounds and a short timer (yamux's
    close waits 0.2 s), and there is no event for "a task ended": poll, bounded by WAIT.
    """
    me = trio.lowlevel.current_task()
    leaked: set[trio.lowlevel.Task] = set()
    with trio.move_on_after(WAIT):
        while True:
            await trio.testing.wait_all_tasks_blocked()
            leaked = {task for task in live_tasks() - before - {me} if not ignore(task)}
            if not leaked:
                break
            await trio.sleep(0.02)
    return leaked


# -- 1. the control stream ----------------------------------------------------------------------
