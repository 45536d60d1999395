"""Attackers on a node's connections and dials: ``python -m tests.support.attackers.connections``.

Subcommands (every loop bounded in count and time; JSON lines on stdout):

* ``hold --target HOST:PORT --source IP --count N --seconds S --ramp R``: keep up to N TCP
  connections to the target open from source address IP, never sending a byte, re-opening
  those the target closes (at most ``20 * N`` attempts in all), for S seconds.  Prints
  ``{"event": "holding", ...}`` once N attempts were made and R more seconds of holding have
  passed (the target's slots are taken by then), then ``{"event": "done", "attempts": a,
  "open": o}``.
* ``reflect --bootstrap MADDR --claim HOST --ports P1,P2,... --route R``: a DNDM node with
  gossip whose adverts claim that it listens at HOST:Pi (addresses someone else owns); it
  joins through the bootstrap node and declares, then closes, an intent on R once per port,
  0.4 s apart (one gossip announcement each, the i-th claiming port Pi only).  Prints
  ``{"event": "announced", "count": n}`` after each, ``{"event": "done"}`` at the end.
* ``foreign --target MADDR --count N --seconds S``: N plain py-libp2p hosts (fresh identities,
  no DNDM) connect to the target and stay connected for S seconds, reconnecting (at most 20
  times each) when the target closes them.  Prints ``{"event": "connected", "count": n}``
  once all N connected once, ``{"event": "done", "dropped": d}`` at the end.
* ``find-node-flood --target MADDR --seconds S --streams K``: a plain py-libp2p host sends
  FIND_NODE requests as fast as the target answers, on K streams at once (a new stream when
  one is reset), for S seconds.  Prints ``{"event": "done", "answers": a, "resets": r}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

import trio

_MAX_ATTEMPTS_PER_SLOT = 20


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


# -- hold: many connection attempts from one address -----------------------------------------------


async def hold(target: str, source: str, count: int, seconds: float, ramp: float) -> None:
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    attempts = 0
    open_now = 0
    budget = _MAX_ATTEMPTS_PER_SLOT * count

    async def one_slot() -> None:
        nonlocal attempts, open_now
        while attempts < budget:
            attempts += 1
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                await sock.bind((source, 0))
                await sock.connect((host, port))
            except OSError:
                sock.close()
                await trio.sleep(0.05)
                continue
            open_now += 1
            try:
                while True:  # hold it, silent, until the target closes it
                    if not await sock.recv(4096):
                        break
            except OSError:
                pass
            finally:
                open_now -= 1
                sock.close()
            await trio.sleep(0.05)

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one_slot)
            while attempts < count:  # noqa: ASYNC110 (a counter of our own tasks)
                await trio.sleep(0.05)
            await trio.sleep(ramp)
            emit({"event": "holding", "attempts": attempts, "open": open_now})
            await trio.sleep_forever()
    emit({"event": "done", "attempts": attempts, "open": open_now})


# -- reflect: adverts naming an address the advertiser does not own ------------------------------


async def reflect(bootstrap: str, claim: str, ports: list[int], route: str) -> None:
    from multiaddr import Multiaddr

    from dndm_p2p.config import GossipConfig, NodeConfig
    from dndm_p2p.errors import Unavailable
    from dndm_p2p.node.node import Node
    from tests.proto.messages_pb2 import Foo

    claimed = [Multiaddr(f"/ip4/{claim}/tcp/{ports[0]}")]

    class ClaimingNode(Node):
        """Claims the addresses; dials nobody but the bootstrap node (so that the victim
        only ever hears of it through adverts)."""

        def advertised_addrs(self) -> list[Multiaddr]:
            return list(claimed)

        async def connect(self, addr: str, *, keep: bool = True) -> str:
            if addr != bootstrap:
                raise Unavailable(f"the reflector dials nobody but its bootstrap, not {addr}")
            return await super().connect(addr, keep=keep)

    # Discovery dials through the node's session table, not through Node.connect: refuse
    # there too (this process is the attacker's own; nothing else runs in it).
    from dndm_p2p.node.session_table import SessionTable

    join = SessionTable.join

    async def join_bootstrap_only(table: SessionTable, addr: str, *, keep: bool = True) -> str:
        if addr != bootstrap:
            raise Unavailable(f"the reflector dials nobody but its bootstrap, not {addr}")
        return await join(table, addr, keep=keep)

    SessionTable.join = join_bootstrap_only  # type: ignore[method-assign]

    config = NodeConfig(
        name="reflector",
        gossip=GossipConfig(min_interval=0.05, refresh=10.0, advert_ttl=30.0),
        bootstrap=(bootstrap,),
    )
    async with ClaimingNode(config) as node:
        emit({"event": "joined", "peer": node.peer_id})
        for count, port in enumerate(ports, start=1):
            claimed[0] = Multiaddr(f"/ip4/{claim}/tcp/{port}")
            intent = node.publish(route, Foo)
            await trio.sleep(0.2)
            intent.close()
            await trio.sleep(0.2)
            emit({"event": "announced", "count": count})
        emit({"event": "done"})


# -- foreign: peers that never speak DNDM, holding connection slots ------------------------------


async def foreign(target: str, count: int, seconds: float) -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair

    from dndm_p2p.host.build import connect, running_host

    connected = 0
    dropped = 0
    all_connected = trio.Event()

    async def one_peer() -> None:
        nonlocal connected, dropped
        first = True
        async with running_host(create_new_key_pair()) as host:
            for _ in range(_MAX_ATTEMPTS_PER_SLOT):
                try:
                    peer = await connect(host, target, timeout=5)
                except Exception:
                    await trio.sleep(0.2)
                    continue
                if first:
                    first = False
                    connected += 1
                    if connected == count:
                        all_connected.set()
                while host.get_network().get_connections(peer):  # noqa: ASYNC110
                    await trio.sleep(0.1)
                dropped += 1

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one_peer)
            await all_connected.wait()
            emit({"event": "connected", "count": connected})
            await trio.sleep_forever()
    emit({"event": "done", "dropped": dropped})


# -- find-node-flood: FIND_NODE as fast as the target answers --------------------------------------


async def find_node_flood(target: str, seconds: float, streams: int) -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.kad_dht.common import PROTOCOL_ID
    from libp2p.kad_dht.pb.kademlia_pb2 import Message
    from libp2p.peer.id import ID
    from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes

    from dndm_p2p.host.build import connect, running_host

    answers = 0
    resets = 0
    async with running_host(create_new_key_pair()) as host:
        victim = await connect(host, target)

        async def flood_one() -> None:
            nonlocal answers, resets
            while True:
                try:
                    stream = await host.new_stream(victim, [TProtocol(PROTOCOL_ID)])
                except Exception:
                    resets += 1
                    await trio.sleep(0.05)
                    continue
                try:
                    while True:
                        key = ID.from_pubkey(create_new_key_pair().public_key).to_bytes()
                        request = Message(type=Message.MessageType.FIND_NODE, key=key)
                        await stream.write(encode_varint_prefixed(request.SerializeToString()))
                        await read_varint_prefixed_bytes(stream)
                        answers += 1
                except Exception:
                    resets += 1
                    await trio.sleep(0.01)

        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(flood_one)
    emit({"event": "done", "answers": answers, "resets": resets, "seconds": seconds})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hold")
    p.add_argument("--target", required=True)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--ramp", type=float, default=3.0)
    p = sub.add_parser("reflect")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--claim", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--route", required=True)
    p = sub.add_parser("foreign")
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("find-node-flood")
    p.add_argument("--target", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--streams", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "hold":
        trio.run(hold, args.target, args.source, args.count, args.seconds, args.ramp)
    elif args.command == "reflect":
        ports = [int(port) for port in args.ports.split(",")]
        trio.run(reflect, args.bootstrap, args.claim, ports, args.route)
    elif args.command == "foreign":
        trio.run(foreign, args.target, args.count, args.seconds)
    else:
        trio.run(find_node_flood, args.target, args.seconds, args.streams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
