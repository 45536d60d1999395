"""One simulated node across its incarnations, as a run tracks it: :class:`NodeSlot`.

A slot keeps what outlives an incarnation (its :class:`~simnet.net.SimNode`, class label,
roles, identity file, DHT stream counts) and the handles of the current incarnation (its DNDM
node, the nursery of its workload tasks, its cancel scope).  :func:`count_kad_streams` makes a
host count into its slot the DHT streams it opens and serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import StreamHandlerFn, TProtocol
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL_ID

from dndm_p2p.node.node import Node
from simnet.net import SimNode

__all__ = ["NodeSlot", "count_kad_streams"]


@dataclass(eq=False)
class NodeSlot:
    """One simulated node across its incarnations."""

    index: int
    sim: SimNode
    cls: str
    boot: bool
    key_file: Path
    #: The routes it publishes on (indexes into the run's routes).
    publishes: list[int] = field(default_factory=list)
    #: The routes and patterns it subscribes to.
    subscribes: list[str] = field(default_factory=list)
    node: Node | None = None
    tasks: trio.Nursery | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)
    incarnation: int = 0
    peer: str | None = None
    down_reason: str | None = None
    kad_out: int = 0
    kad_in: int = 0
    #: Subscriptions of the current incarnation (ids).
    subs: set[str] = field(default_factory=set)

    @property
    def up(self) -> bool:
        """Whether an incarnation of the node is running."""
        return self.node is not None

    @property
    def address(self) -> str:
        """The first listen address of the current incarnation (which must be up)."""
        assert self.node is not None
        return self.node.addrs[0]

    def stats(self) -> dict[str, Any]:
        """The fields of this node's ``node_stats`` event (traffic, dials, peers, DHT)."""
        node, counters = self.node, self.sim.counters
        rt = peers = errors = None
        lookups = provides = 0
        lookup_s: float | None = None
        if node is not None:
            peers = len(node.peers())
            errors = node.error_count
            discovery = node.discovery
            if discovery is not None and discovery.dht is not None:
                dht = discovery.dht
                rt = dht.kad.get_routing_table_size()
                lookups = dht.stats.lookups
                provides = dht.stats.provides
                seconds = list(dht.stats.lookup_seconds)
                lookup_s = round(sum(seconds) / len(seconds), 6) if seconds else None
        return {
            "node": self.index,
            "cls": self.cls,
            "boot": self.boot,
            "up": node is not None,
            "bytes_out": counters.bytes_sent,
            "bytes_in": counters.bytes_received,
            "dials_out": counters.dials_out,
            "dials_in": counters.dials_in,
            "dials_failed": counters.dials_failed,
            "conns": self.sim.connection_count,
            "peers": peers,
            "rt": rt,
            "dht_lookups": lookups,
            "dht_provides": provides,
            "dht_lookup_s": lookup_s,
            "kad_out": self.kad_out,
            "kad_in": self.kad_in,
            "errors": errors or 0,
        }


def count_kad_streams(host: IHost, slot: NodeSlot) -> None:
    """Count the DHT streams ``host`` opens and serves into ``slot``."""
    new_stream = host.new_stream
    set_handler = host.set_stream_handler

    async def counting_new_stream(peer_id: Any, protocol_ids: Any) -> INetStream:
        if KAD_PROTOCOL_ID in protocol_ids:
            slot.kad_out += 1
        return await new_stream(peer_id, protocol_ids)

    def counting_set_handler(protocol_id: TProtocol, handler: StreamHandlerFn) -> None:
        if protocol_id != KAD_PROTOCOL_ID:
            set_handler(protocol_id, handler)
            return

        async def counted(stream: INetStream) -> None:
            slot.kad_in += 1
            await handler(stream)

        set_handler(protocol_id, counted)

    host.new_stream = counting_new_stream  # type: ignore[method-assign]
    host.set_stream_handler = counting_set_handler  # type: ignore[method-assign,assignment]
