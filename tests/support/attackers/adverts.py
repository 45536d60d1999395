"""A peer that speaks DNDM's control protocol by hand and chooses its adverts' TTLs:
``python -m tests.support.attackers.adverts NODE_ADDR``.

A plain py-libp2p host (no :class:`~dndm_p2p.node.Node`): it connects to the node, reads the
node's hello, sends its own (with no routes) and prints ``{"event": "ready", "peer": ID}``.
Then it runs the JSON commands it reads from stdin, one per line:

* ``{"op": "advert", "route": R, "handle": H, "ttl_ms": T, "register": bool}`` sends one intent
  advert (sequence numbers increase by themselves) → ``sent``;
* ``{"op": "exit"}`` (or the end of stdin) → exits 0.

Each data stream the node opens (it subscribes to one of our intents) is printed as
``{"event": "link_open", "route": R}`` once its LinkOpen is read, and ``{"event": "link_end",
"route": R}`` when the node ends it.  We never send data on it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol

from dndm_p2p.host.build import HostConfig, connect, running_host
from dndm_p2p.host.identity import generate_identity
from protocols.errors import DndmError
from protocols.framing import FrameReader, encode_message, read_message
from protocols.ids import (
    CONTROL_PROTOCOL_ID,
    DATA_PROTOCOL_ID,
    MAX_CONTROL_FRAME_SIZE,
    MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
)
from protocols.v1 import advert_pb2, common_pb2, control_pb2, hello_pb2, ping_pb2

#: Bound of every wait of this program on the node.
WAIT = 20.0


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line and flush it."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The JSON commands read from stdin (a worker thread reads, so trio never blocks)."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)  # type: ignore[call-arg]
        if not line:
            return
        if line.strip():
            yield json.loads(line)


async def watch_link(stream: INetStream) -> None:
    """Report a data stream the node opened: its LinkOpen, then its end."""
    reader = FrameReader(stream, MAX_FRAME_SIZE)
    route = ""
    try:
        first = await read_message(reader, control_pb2.DataFrame)
        if first is not None and first.WhichOneof("body") == "open":
            route = first.open.route
            emit({"event": "link_open", "route": route})
            while await reader.read_frame() is not None:
                pass
    except DndmError:
        pass
    emit({"event": "link_end", "route": route})


async def amain(args: argparse.Namespace) -> None:
    """Connect, handshake, then run the commands."""
    incoming, control_in = trio.open_memory_channel[INetStream](math.inf)
    async with (
        running_host(generate_identity(), HostConfig()) as host,
        trio.open_nursery() as nursery,
    ):

        async def on_control(stream: INetStream) -> None:
            incoming.send_nowait(stream)

        async def on_data(stream: INetStream) -> None:
            await watch_link(stream)

        host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), on_control)
        host.set_stream_handler(TProtocol(DATA_PROTOCOL_ID), on_data)
        sequence = itertools.count(1)
        advert_sequence = itertools.count(1)
        with trio.fail_after(WAIT):
            node_id = await connect(host, args.node)
            node_control = FrameReader(await control_in.receive(), MAX_CONTROL_FRAME_SIZE)
            node_hello = await read_message(node_control, control_pb2.ControlFrame)
            assert node_hello is not None
            assert node_hello.WhichOneof("body") == "hello"
            control = await host.new_stream(node_id, [TProtocol(CONTROL_PROTOCOL_ID)])
            hello = hello_pb2.Hello(
                protocol_version=PROTOCOL_VERSION,
                node_name="ttl-chooser",
                capabilities=common_pb2.Capabilities(reliability=True),
            )
            frame = control_pb2.ControlFrame(hello=hello)
            frame.header.sequence = next(sequence)
            await control.write(encode_message(frame))

        write_lock = trio.Lock()

        async def send(frame: control_pb2.ControlFrame) -> None:
            async with write_lock:
                frame.header.sequence = next(sequence)
                await control.write(encode_message(frame))

        async def answer_node_control() -> None:
            # Answer the node's pings (so it keeps us) and drop everything else it sends.
            try:
                while (
                    frame := await read_message(node_control, control_pb2.ControlFrame)
                ) is not None:
                    if frame.WhichOneof("body") == "ping":
                        pong = ping_pb2.Pong(
                            nonce=frame.ping.nonce, ping_sent_us=frame.ping.sent_us
                        )
                        await send(control_pb2.ControlFrame(pong=pong))
            except DndmError:
                pass

        nursery.start_soon(answer_node_control)
        emit({"event": "ready", "peer": str(host.get_id())})
        async for command in commands():
            if command["op"] == "exit":
                break
            if command["op"] == "advert":
                advert = advert_pb2.Advert(
                    route=command["route"],
                    kind=common_pb2.ROUTE_KIND_INTENT,
                    register=command.get("register", True),
                    ttl_ms=command.get("ttl_ms", 0),
                    sequence=next(advert_sequence),
                    handle_id=command["handle"],
                )
                await send(
                    control_pb2.ControlFrame(adverts=advert_pb2.AdvertBatch(adverts=[advert]))
                )
                emit({"event": "sent", "handle": command["handle"]})
        emit({"event": "exiting"})
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.attackers.adverts")
    parser.add_argument("node", help="the node's address, /ip4/…/tcp/…/p2p/<id>")
    trio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    main()
