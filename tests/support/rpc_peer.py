"""The scriptable node of ``tests/support/mp_peer.py`` with request/reply commands.

``python -m tests.support.rpc_peer [mp_peer options]`` accepts every ``mp_peer`` command, and:

* ``{"op": "serve", "id": H, "route": P}`` runs a :class:`~dndm_p2p.Service` of ``Foo`` to
  ``Foo`` on path ``P`` → ``serving``.  It answers ``text`` upper-cased; ``"fail"`` raises
  ``ValueError("refused: fail")``; ``"stream N"`` answers ``"0"`` .. ``"N-1"`` as a stream.
  ``served`` events report its counters on ``{"op": "served", "id": H}``;
* ``{"op": "caller", "id": H, "route": P}`` opens a :class:`~dndm_p2p.Caller` → ``caller_open``
  once a service is linked;
* ``{"op": "call", "id": H, "text": T, "timeout": S}`` streams one call → ``replies``
  (``texts``), or ``call_failed`` (``error``: the class name, ``message``, ``kind``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import trio

from dndm_p2p import Caller, DndmError, RemoteError, Service
from dndm_p2p.config import NodeConfig
from tests.proto.messages_pb2 import Foo
from tests.support.mp_peer import Peer, emit, serve


def answer(request: Foo) -> Foo | Iterator[Foo]:
    """The test service's handler."""
    if request.text == "fail":
        raise ValueError("refused: fail")
    if request.text.startswith("stream "):
        count = int(request.text.split()[1])
        return (Foo(text=str(i)) for i in range(count))
    return Foo(text=request.text.upper())


class RpcPeer(Peer):
    """The mp_peer command interpreter plus services and callers."""

    def __init__(self, node: Any, nursery: trio.Nursery) -> None:
        super().__init__(node, nursery)
        self.services: dict[str, Service[Foo, Foo]] = {}
        self.callers: dict[str, Caller[Foo, Foo]] = {}

    async def op_serve(self, command: dict[str, Any]) -> None:
        await self.nursery.start(self._keep_service, command["id"], command["route"])

    async def _keep_service(self, key: str, path: str, *, task_status: Any) -> None:
        async with self.node.service(path, Foo, Foo, answer) as service:
            self.services[key] = service
            emit({"event": "serving", "id": key})
            task_status.started()
            await trio.sleep_forever()

    async def op_served(self, command: dict[str, Any]) -> None:
        service = self.services[command["id"]]
        emit(
            {
                "event": "served",
                "id": command["id"],
                "served": service.served,
                "failed": service.failed,
            }
        )

    async def op_caller(self, command: dict[str, Any]) -> None:
        await self.nursery.start(self._keep_caller, command["id"], command["route"])

    async def _keep_caller(self, key: str, path: str, *, task_status: Any) -> None:
        async with self.node.caller(path, Foo, Foo) as caller:
            self.callers[key] = caller
            task_status.started()
            with trio.move_on_after(30):
                await caller.wait_services()
            emit({"event": "caller_open", "id": key})
            await trio.sleep_forever()

    async def op_call(self, command: dict[str, Any]) -> None:
        caller = self.callers[command["id"]]
        request = Foo(text=command.get("text", ""))
        try:
            texts = [
                reply.text
                async for reply in caller.stream(request, timeout=command.get("timeout", 10))
            ]
        except DndmError as exc:
            emit(
                {
                    "event": "call_failed",
                    "id": command["id"],
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "kind": exc.kind if isinstance(exc, RemoteError) else "",
                }
            )
            return
        emit({"event": "replies", "id": command["id"], "texts": texts})


async def amain(args: argparse.Namespace) -> None:
    """Run the node and its commands until told to exit or stdin ends."""
    config = NodeConfig(
        name=args.name,
        listen=("/ip4/127.0.0.1/tcp/0",),
        ping_interval=0.5,
        ping_timeout=5.0,
    )
    await serve(config, RpcPeer)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.rpc_peer")
    parser.add_argument("--name", default="")
    parser.add_argument("--key", type=Path)
    trio.run(amain, parser.parse_args(argv))


if __name__ == "__main__":
    main()
