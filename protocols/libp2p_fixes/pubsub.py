"""Fixes for py-libp2p's Pubsub and GossipSub: a steady heartbeat, flood publishing, fresh
sequence numbers, whole RPC writes, and malformed RPCs that cost only their stream.

The fixes are GossipSub keyword arguments (:func:`steady_heartbeat_options`) and subclasses the
caller constructs (:class:`FloodPublishGossipSub`, :class:`FixedPubsub`); py-libp2p's classes
are never changed.  The defects are listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

__all__ = ["FixedPubsub", "FloodPublishGossipSub", "steady_heartbeat_options"]

logger = logging.getLogger(__name__)


def steady_heartbeat_options() -> dict[str, Any]:
    """GossipSub keyword arguments that keep the heartbeat at its configured interval
    (adaptive gossip off)."""
    return {"adaptive_gossip_enabled": False}


class FloodPublishGossipSub(GossipSub):
    """py-libp2p's GossipSub, sending our own messages to every peer subscribed to the topic
    (go-libp2p's "flood publishing"), not only to the topic's mesh.

    Relayed messages follow the mesh, unless :attr:`flood_relay` is set: then they too go to
    every subscribed peer.
    """

    #: Forward relayed messages to every subscribed peer, not only the mesh.
    flood_relay = False

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterable[ID]:
        topics = list(topic_ids)
        peers = set(super()._get_peers_to_send(topics, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if pubsub is not None and (self.flood_relay or origin == msg_forwarder == pubsub.my_id):
            for topic in topics:
                peers.update(
                    peer for peer in pubsub.peer_topics.get(topic, ()) if peer in self.peer_protocol
                )
            peers.discard(origin)
            peers.discard(msg_forwarder)
        return peers


class FixedPubsub(Pubsub):
    """py-libp2p's Pubsub with three guarantees added:

    * sequence numbers start from the clock in nanoseconds (so a restarted node does not reuse
      those of its predecessor) and count up by one per message;
    * RPCs written to one stream never interleave (:meth:`write_msg` holds a lock per stream);
    * an inbound RPC that is not valid protobuf resets that peer's stream, which is then
      treated as a dead peer, and calls ``on_malformed_rpc(peer_id)``; the host lives on.
    """

    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        *,
        strict_signing: bool = True,
        on_malformed_rpc: Callable[[ID], None] | None = None,
    ) -> None:
        super().__init__(host, router, strict_signing=strict_signing)
        self.counter = time.time_ns()
        self._on_malformed_rpc = on_malformed_rpc
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        """Write one RPC to ``stream``, never interleaved with another write to it."""
        lock = self._write_locks.setdefault(stream, trio.Lock())
        async with lock:
            return await super().write_msg(stream, rpc_msg)

    async def stream_handler(self, stream: INetStream) -> None:
        """Serve an inbound pubsub stream; reset it if the peer sends a malformed RPC."""
        try:
            await super().stream_handler(stream)
        except DecodeError as exc:
            peer_id = stream.muxed_conn.peer_id
            if self._on_malformed_rpc is not None:
                self._on_malformed_rpc(peer_id)
            logger.warning("malformed pubsub RPC from %s (%s): stream reset", peer_id, exc)
            with contextlib.suppress(StreamError, BaseLibp2pError, OSError):
                await stream.reset()
            self._handle_dead_peer(peer_id)
