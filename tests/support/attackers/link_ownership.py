"""A hostile subscriber that tries to make a publisher wait: ``python -m
tests.support.attackers.link_ownership --target MADDR --route ROUTE --mode MODE``.

A plain py-libp2p host (the node's Noise and yamux settings, no DNDM node) connects to the
target, sends a valid Hello, and opens a data link to ``ROUTE`` that never grants more credit:

* ``--mode block``: an unreliable link asking for depth 1 and ``overflow=block``;
* ``--mode reliable``: a reliable link (depth 1, credit 1) that never acknowledges.

It prints ``{"event": "listening", "peer": ...}`` once it runs and ``{"event": "link_opened"}``
once its LinkOpen is written, then reads nothing on the link (the node's control stream is
drained so that it never fills) until stdin ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol

from dndm_p2p.host.build import HostConfig, connect, running_host
from dndm_p2p.host.identity import generate_identity
from protocols.framing import encode_message
from protocols.ids import CONTROL_PROTOCOL_ID, DATA_PROTOCOL_ID, PROTOCOL_VERSION
from protocols.v1 import common_pb2, control_pb2, data_pb2, hello_pb2

if TYPE_CHECKING:
    from libp2p.abc import INetStream


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line and flush it."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def link_open(route: str, mode: str) -> control_pb2.DataFrame:
    """The LinkOpen of the attack: depth 1, credit 1, ``block`` (and reliable if asked)."""
    frame = control_pb2.DataFrame(
        open=data_pb2.LinkOpen(
            route=route,
            link_id=1,
            qos=common_pb2.QoS(depth=1, overflow=common_pb2.QoS.BLOCK, reliable=mode == "reliable"),
            initial_credit=1,
        )
    )
    frame.header.sequence = 1
    return frame


async def drain(stream: INetStream) -> None:
    """Read and discard what the node writes on its control stream."""
    try:
        while await stream.read(1 << 16):
            pass
    except Exception:  # the connection went away: nothing left to drain
        return


async def wait_stdin_end() -> None:
    """Return when stdin ends (the test closed it, or died)."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)  # type: ignore[call-arg]
        if not line:
            return


async def amain(args: argparse.Namespace) -> None:
    """Connect, open the hostile link, and hold it until stdin ends."""
    async with (
        running_host(generate_identity(), HostConfig()) as host,
        trio.open_nursery() as nursery,
    ):

        async def on_control(stream: INetStream) -> None:
            await drain(stream)

        host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), on_control)
        emit({"event": "listening", "peer": str(host.get_id())})
        target = await connect(host, args.target)
        control = await host.new_stream(target, [TProtocol(CONTROL_PROTOCOL_ID)])
        hello = control_pb2.ControlFrame(
            hello=hello_pb2.Hello(
                protocol_version=PROTOCOL_VERSION,
                node_name="attacker",
                capabilities=common_pb2.Capabilities(reliability=True),
            )
        )
        hello.header.sequence = 1
        await control.write(encode_message(hello))
        nursery.start_soon(drain, control)
        data = await host.new_stream(target, [TProtocol(DATA_PROTOCOL_ID)])
        await data.write(encode_message(link_open(args.route, args.mode)))
        emit({"event": "link_opened", "mode": args.mode})
        await wait_stdin_end()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.attackers.link_ownership")
    parser.add_argument("--target", required=True)
    parser.add_argument("--route", required=True)
    parser.add_argument("--mode", choices=["block", "reliable"], required=True)
    trio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    main()
