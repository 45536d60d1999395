"""Memory attacks on a node, from another process: ``python -m tests.support.attackers.memory``.

A plain py-libp2p host (built like a node's, Noise and yamux, but running no DNDM code) dials
the victim and runs one attack for at most ``--duration`` seconds, then prints one JSON line::

    {"attack": ..., "result_codes": [...], "dropped": bool, "sent_bytes": n, ...}

``result_codes`` are the names of the ``Result`` codes the victim sent back; ``dropped`` says
whether the victim closed the connection.  Attacks (``--attack``):

* ``unacked``: a reliable link on ``--route`` that grants credit and never acknowledges;
* ``depth``: ``--count`` links on ``--route``, each asking a queue depth of 2^20, none read;
* ``partial``: ``--count`` data streams, each with the start of a 4 MiB frame, never finished;
* ``ping_flood``: pings with ``--size`` bytes of payload, as fast as they go; the node's
  control stream is never read;
* ``unread_control``: bytes written without end into the control stream the victim opened to
  us (which the victim never reads), ignoring the window it granted.

Every loop is bounded by ``--duration`` and by a count.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from dndm_p2p.host.build import connect, running_host
from dndm_p2p.host.identity import generate_identity
from protocols.framing import FrameReader, FrameWriter, parse_message
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID, MAX_FRAME_SIZE, PROTOCOL_VERSION
from protocols.v1 import common_pb2, control_pb2, data_pb2, hello_pb2, ping_pb2, result_pb2

CTL = TProtocol(CONTROL_PROTOCOL_ID)
DATA = TProtocol(DATA_PROTOCOL_ID)


def code_name(code: int) -> str:
    try:
        return result_pb2.Result.Code.Name(code)  # type: ignore[arg-type]
    except ValueError:
        return f"ERROR({code})"


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Attacker:
    def __init__(self, host: IHost, args: argparse.Namespace) -> None:
        self.host = host
        self.args = args
        self.deadline = trio.current_time() + args.duration
        self.report: dict[str, Any] = {
            "attack": args.attack,
            "result_codes": [],
            "dropped": False,
            "sent_bytes": 0,
            "received_messages": 0,
        }
        self.victim_control: list[INetStream] = []
        self.victim_control_seen = trio.Event()

    def codes(self, body: bytes, kind: type[Any]) -> None:
        try:
            frame = parse_message(body, kind)
        except Exception:
            return
        if frame.WhichOneof("body") == "result":
            self.report["result_codes"].append(code_name(frame.result.code))

    async def on_victim_control(self, stream: INetStream) -> None:
        """The victim's control stream to us: kept, never read (unless an attack writes it)."""
        self.victim_control.append(stream)
        self.victim_control_seen.set()
        await trio.sleep_forever()

    async def hello(self) -> FrameWriter:
        stream = await self.host.new_stream(self.peer, [CTL])
        writer = FrameWriter(stream)
        frame = control_pb2.ControlFrame(
            hello=hello_pb2.Hello(
                protocol_version=PROTOCOL_VERSION,
                node_name="attacker",
                capabilities=common_pb2.Capabilities(reliability=True),
            )
        )
        await writer.write_message(frame)
        self.control_reader = FrameReader(stream)
        return writer

    async def open_link(self, link_id: int, *, depth: int, credit: int, reliable: bool) -> Any:
        stream = await self.host.new_stream(self.peer, [DATA])
        writer = FrameWriter(stream)
        qos = common_pb2.QoS(
            depth=depth,
            overflow=common_pb2.QoS.BLOCK if reliable else common_pb2.QoS.DROP_OLDEST,
            reliable=reliable,
        )
        opening = data_pb2.LinkOpen(
            route=self.args.route, link_id=link_id, qos=qos, initial_credit=credit
        )
        await writer.write_message(control_pb2.DataFrame(open=opening))
        return stream, FrameReader(stream, MAX_FRAME_SIZE), writer

    # -- attacks ------------------------------------------------------------------------------

    async def unacked(self) -> None:
        await self.hello()
        _, reader, writer = await self.open_link(1, depth=4096, credit=1 << 20, reliable=True)
        with trio.move_on_at(self.deadline):
            for _ in range(1_000_000):
                bodies = await reader.read_frames()
                if not bodies:
                    self.report["dropped"] = True
                    return
                granted = 0
                for body in bodies:
                    frame = parse_message(body, control_pb2.DataFrame)
                    kind = frame.WhichOneof("body")
                    if kind == "batch":
                        granted += len(frame.batch.messages)
                    elif kind == "result":
                        self.report["result_codes"].append(code_name(frame.result.code))
                        return
                self.report["received_messages"] += granted
                if granted:
                    ack = data_pb2.Ack(link_id=1, cumulative_sequence=0, credit=granted)
                    await writer.write_message(control_pb2.DataFrame(ack=ack))

    async def first_frame(self, reader: FrameReader) -> None:
        """Note the Result code of a link's first frame, if it is one."""
        with trio.move_on_after(2):
            try:
                body = await reader.read_frame()
            except Exception:
                return
            if body is not None:
                self.codes(body, control_pb2.DataFrame)

    async def depth(self) -> None:
        await self.hello()
        async with trio.open_nursery() as nursery:
            with trio.move_on_at(self.deadline):
                for link_id in range(1, self.args.count + 1):
                    try:
                        _, reader, _ = await self.open_link(
                            link_id, depth=1 << 20, credit=1, reliable=False
                        )
                    except Exception as exc:  # the victim dropped us
                        self.report["dropped"] = True
                        self.report["error"] = repr(exc)[:200]
                        break
                    nursery.start_soon(self.first_frame, reader)

    async def partial(self) -> None:
        await self.hello()
        async with trio.open_nursery() as nursery:
            with trio.move_on_at(self.deadline):
                for _ in range(self.args.count):
                    try:
                        stream = await self.host.new_stream(self.peer, [DATA])
                    except Exception as exc:  # the victim dropped us
                        self.report["dropped"] = True
                        self.report["error"] = repr(exc)[:200]
                        break
                    nursery.start_soon(self.first_frame, FrameReader(stream, MAX_FRAME_SIZE))
                    try:
                        await stream.write(varint(MAX_FRAME_SIZE) + b"\0" * (1 << 20))
                        self.report["sent_bytes"] += 1 << 20
                    except Exception:  # the victim reset this stream
                        self.report["streams_reset"] = self.report.get("streams_reset", 0) + 1

    async def ping_flood(self) -> None:
        writer = await self.hello()
        payload = b"p" * self.args.size
        with trio.move_on_at(self.deadline):
            burst = max(1, 65536 // max(1, len(payload)))  # about 64 KiB per write
            try:
                for first in range(1, 1_000_000, burst):
                    frames = []
                    for nonce in range(first, first + burst):
                        frame = control_pb2.ControlFrame(
                            ping=ping_pb2.Ping(nonce=nonce, sent_us=1, payload=payload)
                        )
                        frame.header.sequence = nonce
                        frames.append(frame)
                    await writer.write_messages(frames)
                    self.report["sent_bytes"] += len(payload) * burst
            except Exception:
                self.report["dropped"] = True

    async def unread_control(self) -> None:
        await self.hello()
        with trio.move_on_at(self.deadline):
            await self.victim_control_seen.wait()
            stream = self.victim_control[0]
            muxed = stream.muxed_stream
            assert isinstance(muxed, YamuxStream)
            muxed.send_window = 1 << 40  # ignore the window the victim granted
            chunk = b"u" * 65536
            try:
                for _ in range(100_000):
                    await muxed.write(chunk)
                    self.report["sent_bytes"] += len(chunk)
            except Exception:
                self.report["dropped"] = True

    async def run(self) -> None:
        self.host.set_stream_handler(CTL, self.on_victim_control)
        self.peer = await connect(self.host, self.args.victim)
        await getattr(self, self.args.attack)()
        # Has the victim closed the connection?
        for _ in range(60):  # up to 3 s
            if not self.host.get_network().get_connections(self.peer):
                self.report["dropped"] = True
                break
            await trio.sleep(0.05)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--victim", required=True)
    parser.add_argument("--attack", required=True)
    parser.add_argument("--route", default="")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    async with running_host(generate_identity()) as host:
        attacker = Attacker(host, args)
        with trio.move_on_after(args.duration + 15):
            await attacker.run()
        sys.stdout.write(json.dumps(attacker.report) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
