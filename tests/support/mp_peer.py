"""A scriptable node for the multi-process tests: ``python -m tests.support.mp_peer [options]``.

It starts a :class:`~dndm_p2p.node.Node`, prints ``{"event": "listening", "peer": ...,
"addrs": [...]}`` on stdout, then runs the commands it reads from stdin (one JSON object per
line) and reports everything as JSON lines on stdout:

* ``{"op": "connect", "addr": MADDR}`` → ``connected`` (or ``connect_failed``);
* ``{"op": "publish", "id": H, "route": R, "type": "Foo"}`` → ``declared``, then a ``link``
  event (``kind`` linked/unlinked, ``peer``, ``route``, ``count``) whenever its links change;
* ``{"op": "subscribe", "id": H, "route": R, "type": T, "reliable": bool, "depth": N,
  "overflow": P, "drop_after": [n, ...], "drop_peer": PEER}`` → ``declared``, ``link`` events,
  and one ``recv`` event per batch received (``values``: the ``text`` of a Foo, ``a`` of a
  Bar, ``seq`` of a Sample).  With ``drop_after``, the connection to ``drop_peer`` is closed
  each time the number received passes one of the numbers (``dropped``);
* ``{"op": "send", "id": H, "start": S, "count": N}`` sends messages S .. S+N-1 → ``sent``;
* ``{"op": "wait_remote", "route": R, "kind": "intent"|"interest"}`` → ``remote_seen`` once
  a peer advertised that route;
* ``{"op": "close", "id": H}`` → ``closed``; ``{"op": "exit"}`` (or the end of stdin) → exits 0.

Node events are printed too (``peer_connected``, ``peer_disconnected``, ``error``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from google.protobuf.message import Message
from libp2p.peer.id import ID

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkEventKind
from dndm_p2p.errors import DndmError
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Bar, Foo, Sample

TYPES: dict[str, type[Message]] = {"Foo": Foo, "Bar": Bar, "Sample": Sample}


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line and flush it."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def make(type_name: str, value: int) -> Message:
    """Message number ``value`` of a type."""
    if type_name == "Foo":
        return Foo(text=str(value))
    if type_name == "Bar":
        return Bar(a=value)
    return Sample(seq=value)


def value_of(msg: Any) -> Any:
    """What a ``recv`` event reports of a message."""
    if isinstance(msg, Foo):
        return msg.text
    if isinstance(msg, Bar):
        return msg.a
    return msg.seq


class Peer:
    """The command interpreter around one node."""

    def __init__(self, node: Node, nursery: trio.Nursery) -> None:
        self.node = node
        self.nursery = nursery
        self.handles: dict[str, tuple[Intent[Any] | Interest[Any], str]] = {}

    async def run(self, command: dict[str, Any]) -> bool:
        """Run one command; False means exit."""
        op = command["op"]
        handler: Callable[[dict[str, Any]], Any] | None = getattr(self, f"op_{op}", None)
        if op == "exit":
            return False
        if handler is None:
            emit({"event": "bad_command", "command": command})
            return True
        await handler(command)
        return True

    async def op_connect(self, command: dict[str, Any]) -> None:
        try:
            peer = await self.node.connect(command["addr"], keep=command.get("keep", True))
        except DndmError as exc:
            emit({"event": "connect_failed", "error": str(exc)})
            return
        emit({"event": "connected", "peer": peer})

    async def op_publish(self, command: dict[str, Any]) -> None:
        intent = self.node.publish(command["route"], TYPES[command["type"]])
        self.declared(command["id"], intent, command["type"])

    async def op_subscribe(self, command: dict[str, Any]) -> None:
        options: dict[str, Any] = {}
        for key in ("depth", "overflow", "reliable"):
            if command.get(key) is not None:
                options[key] = command[key]
        interest = self.node.subscribe(command["route"], TYPES[command["type"]], **options)
        self.declared(command["id"], interest, command["type"])
        self.nursery.start_soon(
            self.receive,
            command["id"],
            interest,
            list(command.get("drop_after", [])),
            command.get("drop_peer"),
        )

    def declared(self, handle_id: str, handle: Intent[Any] | Interest[Any], type_name: str) -> None:
        self.handles[handle_id] = (handle, type_name)
        route = handle.route if handle.route is not None else handle.link.route
        emit({"event": "declared", "id": handle_id, "route": str(route)})
        self.nursery.start_soon(self.watch_links, handle_id, handle)

    async def watch_links(self, handle_id: str, handle: Intent[Any] | Interest[Any]) -> None:
        async for event in handle.links():
            emit(
                {
                    "event": "link",
                    "id": handle_id,
                    "kind": "linked" if event.kind is LinkEventKind.LINKED else "unlinked",
                    "peer": event.link.peer,
                    "route": str(event.link.route),
                    "count": len(handle.tracker),
                }
            )

    async def receive(
        self, handle_id: str, interest: Interest[Any], drop_after: list[int], drop_peer: str | None
    ) -> None:
        total = 0
        while True:
            try:
                batch = await interest.receive_batch()
            except DndmError:
                return
            total += len(batch)
            emit({"event": "recv", "id": handle_id, "values": [value_of(m) for m in batch]})
            while drop_after and total >= drop_after[0] and drop_peer is not None:
                drop_after.pop(0)
                await self.node.host.disconnect(ID.from_base58(drop_peer))
                emit({"event": "dropped", "id": handle_id, "at": total})

    async def op_send(self, command: dict[str, Any]) -> None:
        intent, type_name = self.handles[command["id"]]
        assert isinstance(intent, Intent)
        start, count = command.get("start", 0), command["count"]
        for first in range(start, start + count, 500):
            last = min(first + 500, start + count)
            await intent.send_many([make(type_name, value) for value in range(first, last)])
        emit({"event": "sent", "id": command["id"], "count": count})

    async def op_wait_remote(self, command: dict[str, Any]) -> None:
        want_intent = command.get("kind", "intent") == "intent"
        route = command["route"]
        while True:
            for info in self.node.peers():
                session = self.node.session(info.peer)
                if session is None:
                    continue
                table = session.remote_intents if want_intent else session.remote_interests
                if any(str(advert.route) == route for advert in table.values()):
                    emit({"event": "remote_seen", "route": route, "peer": info.peer})
                    return
            await trio.sleep(0.01)

    async def op_close(self, command: dict[str, Any]) -> None:
        handle, _ = self.handles.pop(command["id"])
        handle.close()
        emit({"event": "closed", "id": command["id"]})


async def stdin_commands() -> Any:
    """The JSON commands read from stdin (a worker thread reads, so trio never blocks)."""
    while True:
        # mypy misreads run_sync's keyword-only parameters after *args: Unpack[Ts].
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)  # type: ignore[call-arg]
        if not line:
            return
        if line.strip():
            yield json.loads(line)


async def amain(args: argparse.Namespace) -> None:
    """Run the node and its commands until told to exit or stdin ends."""
    config = NodeConfig(
        name=args.name,
        listen=tuple(args.listen or ["/ip4/127.0.0.1/tcp/0"]),
        key_file=args.key,
        ping_interval=0.5,
        ping_timeout=5.0,
        reconnect_initial=0.05,
        reconnect_max=args.reconnect_max,
    )
    await serve(config)


async def serve(
    config: NodeConfig,
    peer_class: type[Peer] = Peer,
    *,
    stamp: Callable[[], float] | None = None,
) -> None:
    """Run a node with ``config`` and a ``peer_class`` driving it from stdin's commands, until
    told to exit or stdin ends; the node's events go to stdout (with ``stamp()`` as ``t``)."""
    async with Node(config) as node, node.events() as events, trio.open_nursery() as nursery:
        emit({"event": "listening", "peer": node.peer_id, "addrs": node.addrs})

        async def relay_events() -> None:
            async for event in events:
                record: dict[str, Any] = {
                    "event": event.kind,
                    "peer": event.peer,
                    "detail": event.detail,
                }
                if stamp is not None:
                    record["t"] = stamp()
                emit(record)

        nursery.start_soon(relay_events)
        peer = peer_class(node, nursery)
        async for command in stdin_commands():
            if not await peer.run(command):
                break
        emit({"event": "exiting"})
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.mp_peer")
    parser.add_argument("--name", default="")
    parser.add_argument("--listen", action="append")
    parser.add_argument("--key", type=Path)
    parser.add_argument("--reconnect-max", type=float, default=0.5)
    trio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    main()
