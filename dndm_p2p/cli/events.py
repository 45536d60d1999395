"""Node events and link events as JSON records."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from dndm_p2p.cli.output import JsonLines
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkEventKind

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node, NodeEvent

__all__ = ["event_record", "print_events", "print_links"]


async def event_record(node: Node, event: NodeEvent) -> dict[str, Any]:
    """The JSON record of a node event; a new peer's record carries the name from its hello."""
    record: dict[str, Any] = {"event": event.kind, "peer": event.peer}
    if event.kind == "peer_connected" and event.peer is not None:
        session = node.session(event.peer)
        if session is not None:
            # The session starts before the peer's hello (which carries its name) arrives.
            with trio.move_on_after(node.config.handshake_timeout):
                await _first_of(session.hello_received, session.ended)
        record["name"] = session.remote_name if session is not None else ""
    if event.detail:
        record["detail"] = event.detail
    return record


async def _first_of(*events: trio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


async def print_events(
    node: Node, events: trio.MemoryReceiveChannel[NodeEvent], out: JsonLines
) -> None:
    """Write the record of every node event on ``events`` to ``out``, until the channel ends."""
    async for event in events:
        out.write(await event_record(node, event))


async def print_links(
    handle: Intent[Any] | Interest[Any],
    node: Node,
    out: JsonLines,
    on_change: Callable[[], None] | None = None,
) -> None:
    """Write a ``linked``/``unlinked`` record for every link event of ``handle``, calling
    ``on_change`` first (if given) each time."""
    async for event in handle.links():
        if on_change is not None:
            on_change()
        link = event.link
        out.write(
            {
                "event": "linked" if event.kind is LinkEventKind.LINKED else "unlinked",
                "route": str(link.route),
                "peer": link.peer,
                "name": _peer_name(node, link.peer),
            }
        )


def _peer_name(node: Node, peer: str | None) -> str:
    if peer is None:
        return node.name
    session = node.session(peer)
    return session.remote_name if session is not None else ""
