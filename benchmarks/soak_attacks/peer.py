"""What the soak's attack programs share: the command line, the report, a DNDM handshake.

See :mod:`benchmarks.soak_attacks` for the contract.  :func:`main` is every attack's entry
point; :func:`dndm_session` connects a fresh py-libp2p host to the victim and opens a DNDM
control session by hand (a Hello with the adverts the attack wants), so an attack can then
write whatever frames it likes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetStream
    from libp2p.peer.id import ID

    from protocols.v1 import advert_pb2, control_pb2

__all__ = [
    "Report",
    "Session",
    "Target",
    "dndm_session",
    "interest_advert",
    "main",
    "parse_target",
]

#: Seconds allowed for connecting and for the handshake.
CONNECT_TIMEOUT = 10.0
#: The message type the victim publishes on its route.
TICK_TYPE = "dndm.bench.Tick"


@dataclass(frozen=True, slots=True)
class Target:
    """The victim, as the command line names it."""

    addr: str
    host: str
    port: int
    peer_id: str
    route: str
    seconds: float
    budget_bytes: int


@dataclass
class Report:
    """What an attack did; printed as one JSON line when it ends (see :meth:`line`)."""

    attack: str
    unit: str
    stat: float = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def add(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the detail counter ``key``."""
        self.details[key] = self.details.get(key, 0) + n

    def line(self) -> str:
        """The report as one JSON object."""
        obj: dict[str, Any] = {"attack": self.attack, "stat": self.stat, "unit": self.unit}
        obj.update(self.details)
        if self.error is not None:
            obj["error"] = self.error
        return json.dumps(obj)


def parse_target(addr: str, route: str, seconds: float, budget_mb: float) -> Target:
    """The :class:`Target` of ``addr``; raises ``ValueError`` unless it is on 127.0.0.1."""
    parts = addr.strip("/").split("/")
    if len(parts) != 6 or parts[0] != "ip4" or parts[2] != "tcp" or parts[4] != "p2p":
        raise ValueError(f"expected /ip4/127.0.0.1/tcp/<port>/p2p/<id>, not {addr!r}")
    if parts[1] != "127.0.0.1":
        raise ValueError(f"the soak attacks target 127.0.0.1 only, not {parts[1]}")
    return Target(
        addr, parts[1], int(parts[3]), parts[5], route, seconds, int(budget_mb * 1024 * 1024)
    )


Attack = Callable[[Target, Report], Awaitable[None]]


def main(name: str, unit: str, attack: Attack, argv: Sequence[str] | None = None) -> int:
    """Run ``attack`` for ``--seconds`` and print its report (see the package docstring).

    The attack is cancelled when the time is up; an exception it raises ends it early and is
    reported in the ``error`` field.  Returns the exit status (0: the attack ran).
    """
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.soak_attacks.{name}")
    parser.add_argument("--target", required=True, help="/ip4/127.0.0.1/tcp/<port>/p2p/<id>")
    parser.add_argument("--route", required=True, help="a route the victim publishes")
    parser.add_argument("--seconds", type=float, required=True, help="how long to attack")
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=384.0,
        help="most memory the attack tries to make the victim hold (protects a shared machine)",
    )
    args = parser.parse_args(argv)
    try:
        target = parse_target(args.target, args.route, args.seconds, args.budget_mb)
    except ValueError as exc:
        parser.error(str(exc))
    report = Report(name, unit)
    started = time.monotonic()

    async def run() -> None:
        with trio.move_on_after(target.seconds):
            try:
                await attack(target, report)
            except Exception as exc:  # reported, not raised: the soak wants the figures
                report.error = f"{type(exc).__name__}: {exc}"

    trio.run(run)
    report.details["seconds"] = round(time.monotonic() - started, 2)
    print(report.line(), flush=True)
    return 0


# -- a DNDM session written by hand ---------------------------------------------------------------


def interest_advert(
    route: str, *, depth: int, block: bool, reliable: bool, handle_id: int = 1
) -> advert_pb2.Advert:
    """An interest advert for ``route`` (``bench.Tick`` messages) with the given QoS."""
    from protocols.v1 import advert_pb2, common_pb2

    overflow = common_pb2.QoS.BLOCK if block else common_pb2.QoS.DROP_OLDEST
    return advert_pb2.Advert(
        route=route,
        msg_type=TICK_TYPE,
        kind=common_pb2.ROUTE_KIND_INTEREST,
        register=True,
        handle_id=handle_id,
        sequence=handle_id,
        qos=common_pb2.QoS(depth=depth, overflow=overflow, reliable=reliable),
    )


@dataclass
class Session:
    """A py-libp2p host with a hand-made DNDM control session to the victim."""

    host: IHost
    victim: ID
    #: Our control stream (we write on it).
    control: INetStream
    #: The control stream the victim opened to us (it writes on it), once it came.
    victim_control: trio.MemoryReceiveChannel[INetStream]
    sequence: int = 0

    async def send(self, stream: INetStream, *frames: control_pb2.ControlFrame | Any) -> None:
        """Number the frames' headers and write them in one write on ``stream``."""
        from protocols.framing import encode_message

        parts = []
        for frame in frames:
            self.sequence += 1
            frame.header.sequence = self.sequence
            parts.append(encode_message(frame))
        await stream.write(b"".join(parts))

    async def open(self, protocol: str) -> INetStream:
        """A new stream of ``protocol`` to the victim."""
        from libp2p.custom_types import TProtocol

        with trio.fail_after(CONNECT_TIMEOUT):
            return await self.host.new_stream(self.victim, [TProtocol(protocol)])


async def _drain(stream: INetStream) -> None:
    """Read and discard everything the victim sends on ``stream``."""
    try:
        while await stream.read(65536):
            pass
    except Exception:
        return


@asynccontextmanager
async def dndm_session(
    target: Target,
    *,
    interests: Sequence[advert_pb2.Advert] = (),
    read_control: bool = True,
) -> AsyncIterator[Session]:
    """A fresh identity connected to the victim, its Hello (with ``interests``) sent.

    With ``read_control`` the victim's control stream is read and discarded in the background;
    without, it is accepted and never read (the victim's writes pile up on its side).
    """
    from libp2p.custom_types import TProtocol

    from dndm_p2p.host.build import HostConfig, connect, running_host
    from dndm_p2p.host.identity import generate_identity
    from protocols.ids import CONTROL_PROTOCOL_ID, PROTOCOL_VERSION
    from protocols.v1 import common_pb2, control_pb2, hello_pb2

    incoming, received = trio.open_memory_channel["INetStream"](math.inf)
    async with (
        running_host(generate_identity(), HostConfig()) as host,
        trio.open_nursery() as nursery,
    ):

        async def on_control(stream: INetStream) -> None:
            incoming.send_nowait(stream)
            if read_control:
                await _drain(stream)
            else:
                await trio.sleep_forever()

        host.set_stream_handler(TProtocol(CONTROL_PROTOCOL_ID), on_control)
        with trio.fail_after(CONNECT_TIMEOUT):
            victim = await connect(host, target.addr)
            control = await host.new_stream(victim, [TProtocol(CONTROL_PROTOCOL_ID)])
        session = Session(host, victim, control, received)
        hello = control_pb2.ControlFrame(
            hello=hello_pb2.Hello(
                protocol_version=PROTOCOL_VERSION,
                node_name="soak-attacker",
                capabilities=common_pb2.Capabilities(reliability=True),
                interests=list(interests),
            )
        )
        await session.send(control, hello)
        yield session
        nursery.cancel_scope.cancel()


def stderr(text: str) -> None:
    """A progress line on stderr (stdout carries the report only)."""
    print(text, file=sys.stderr, flush=True)
