"""A scriptable node with NAT traversal, for the NAT lab tests: ``python -m
tests.support.nat_peer``.

It runs like :mod:`tests.support.mp_peer` (same commands, same JSON lines), with NAT traversal
configured by ``--nat JSON`` (the fields of :class:`nat.NatConfig`) and bootstrap nodes by
``--bootstrap ADDR``.  Every NAT event is printed (``reachability``, ``reserved``,
``punch_started``, ``direct``, ``punch_failed``, ``peer_moved``...) with ``t``, the seconds
since the process started.  Extra commands:

* ``{"op": "status"}`` → ``status``: ``reachability``, ``addrs`` (our dial addresses, relayed
  ones included), ``metrics`` and ``conns`` (per peer, the remote addresses of each connection);
* ``{"op": "stream", "id": H, "start": S, "count": N, "rate": R}`` sends N Sample messages
  (``seq`` S..S+N-1) at R per second → ``sent``;
* ``{"op": "punch", "peer": P}`` → ``punched`` (``ok``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from nat import NatConfig
from tests.support.mp_peer import Peer, emit, make, serve

STARTED = time.monotonic()


class NatPeer(Peer):
    """:class:`tests.support.mp_peer.Peer` with the NAT commands."""

    async def op_status(self, command: dict[str, Any]) -> None:
        nat = self.node.nat
        conns: dict[str, list[list[str]]] = {}
        for conn in self.node.host.get_network().get_connections():
            peer = str(conn.muxed_conn.peer_id)
            conns.setdefault(peer, []).append([str(a) for a in conn.get_transport_addresses()])
        emit(
            {
                "event": "status",
                "t": _elapsed(),
                "reachability": nat.status if nat is not None else None,
                "addrs": self.node.addrs,
                "metrics": nat.metrics.snapshot() if nat is not None else {},
                "conns": conns,
            }
        )

    async def op_stream(self, command: dict[str, Any]) -> None:
        intent, type_name = self.handles[command["id"]]
        assert isinstance(intent, Intent)
        first, count = command.get("start", 0), command["count"]
        rate = float(command.get("rate", 100))
        start = trio.current_time()
        for value in range(count):
            await trio.sleep_until(start + value / rate)
            await intent.send(make(type_name, first + value))
        emit({"event": "sent", "id": command["id"], "count": count})

    async def op_punch(self, command: dict[str, Any]) -> None:
        assert self.node.nat is not None
        ok = await self.node.nat.punch(ID.from_base58(command["peer"]))
        emit({"event": "punched", "peer": command["peer"], "ok": ok})


async def amain(args: argparse.Namespace) -> None:
    """Run the node and its commands until told to exit or stdin ends."""
    config = NodeConfig(
        name=args.name,
        listen=tuple(args.listen or ["/ip4/127.0.0.1/tcp/0"]),
        key_file=args.key,
        bootstrap=tuple(args.bootstrap or ()),
        ping_interval=0.5,
        ping_timeout=5.0,
        reconnect_initial=0.05,
        reconnect_max=0.5,
        nat=NatConfig(**json.loads(args.nat)),
    )
    await serve(config, NatPeer, stamp=_elapsed)


def _elapsed() -> float:
    return round(time.monotonic() - STARTED, 3)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.nat_peer")
    parser.add_argument("--name", default="")
    parser.add_argument("--listen", action="append")
    parser.add_argument("--key", type=Path)
    parser.add_argument("--bootstrap", action="append")
    parser.add_argument("--nat", default="{}", help="NatConfig fields, as a JSON object")
    trio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    main()
