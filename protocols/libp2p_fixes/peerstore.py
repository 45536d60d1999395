"""Fixes for py-libp2p's peer store and for exceptions escaping a host's stream handlers.

* :class:`BoundedPeerStore` holds at most ``max_peers`` entries whatever creates them, and
  never evicts the entry that holds a private key (the host's own identity) nor a peer the
  host is connected to; the least recently touched disconnected peers go first.
* :func:`guard_stream_handlers` keeps an exception raised by any protocol handler (identify,
  ping, kad-dht, pubsub, ...) inside that one stream: the stream is reset, the failure
  counted, and the host keeps running.

Each acts on the one peer store or host it is given; nothing is changed process-wide.  The
defects are listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID
from libp2p.peer.peerdata import PeerData
from libp2p.peer.peerstore import PeerStore

__all__ = [
    "DEFAULT_MAX_PEERS",
    "BoundedPeerStore",
    "HandlerFailures",
    "guard_stream_handlers",
    "handler_failures_of",
]

logger = logging.getLogger(__name__)

#: How many peers a :class:`BoundedPeerStore` keeps unless told otherwise.
DEFAULT_MAX_PEERS = 2000


class _PeerDataMap(dict[ID, PeerData]):
    """The peer store's ``peer_data_map``: tells its store of every entry added or touched."""

    def __init__(self, on_touch: Callable[[ID, bool], None]) -> None:
        super().__init__()
        self._on_touch = on_touch

    def setdefault(self, key: ID, default: PeerData | None = None) -> PeerData:
        added = key not in self
        value = super().setdefault(key, default if default is not None else PeerData())
        self._on_touch(key, added)
        return value

    def __setitem__(self, key: ID, value: PeerData) -> None:
        added = key not in self
        super().__setitem__(key, value)
        self._on_touch(key, added)


class BoundedPeerStore(PeerStore):
    """A py-libp2p peer store with a hard bound and an eviction order that keeps the host alive.

    Invariants, whatever py-libp2p records (addresses, keys, protocols, metadata):

    * at most ``max_peers`` entries, plus the protected ones when more than ``max_peers`` are
      protected at once (connected peers are bounded by the host's connection limit);
    * an entry holding a private key (the host's own identity) is never evicted;
    * an entry of a peer ``is_connected`` says is connected is never evicted;
    * otherwise the least recently touched entries (added, or updated through py-libp2p's
      ``add_*``/``put`` calls) are evicted first.

    Eviction runs when an entry is added beyond the bound and removes down to
    ``max_peers - max_peers // 10`` (at least one below the bound), so its cost is spread.

    :param max_peers: the bound; at least 1.
    :param is_connected: whether the host has an open connection to a peer; set it with
        :meth:`attach` once the host exists.
    """

    def __init__(
        self, max_peers: int = DEFAULT_MAX_PEERS, is_connected: Callable[[ID], bool] | None = None
    ) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, not {max_peers}")
        super().__init__(max_records=max_peers, max_peers=max_peers)
        self._clock = 0
        self._touched: dict[ID, int] = {}
        self._is_connected: Callable[[ID], bool] = is_connected or (lambda _peer: False)
        #: How many entries were evicted so far.
        self.evicted = 0
        self.peer_data_map = _PeerDataMap(self._touch)

    def attach(self, host: IHost) -> None:
        """Protect the peers ``host`` is connected to from eviction."""
        network = host.get_network()
        self._is_connected = lambda peer: bool(network.get_connections(peer))

    def _touch(self, peer_id: ID, added: bool) -> None:
        self._clock += 1
        self._touched[peer_id] = self._clock
        if added and len(self.peer_data_map) > self.max_peers:
            self._evict(keep=peer_id)

    def _enforce_peer_limit(self) -> None:
        if len(self.peer_data_map) > self.max_peers:
            self._evict(keep=None)

    def _protected(self, peer_id: ID, data: PeerData) -> bool:
        if data.privkey is not None:
            return True
        try:
            return self._is_connected(peer_id)
        except Exception:  # a host shutting down: keep the entry rather than fail the caller
            return True

    def _evict(self, keep: ID | None) -> None:
        target = max(self.max_peers - self.max_peers // 10, 0)
        if self.max_peers > 1:
            target = min(target, self.max_peers - 1)
        excess = len(self.peer_data_map) - target
        if excess <= 0:
            return
        candidates: list[tuple[int, ID]] = []
        for peer_id, data in self.peer_data_map.items():
            if peer_id == keep:
                continue
            if self._protected(peer_id, data):
                self._clock += 1
                self._touched[peer_id] = self._clock  # seen just now
                continue
            candidates.append((self._touched.get(peer_id, 0), peer_id))
        candidates.sort(key=lambda item: item[0])
        for _, peer_id in candidates[:excess]:
            dict.pop(self.peer_data_map, peer_id, None)
            self._touched.pop(peer_id, None)
            self.peer_record_map.pop(peer_id, None)
            self.addr_update_channels.pop(peer_id, None)
            self.evicted += 1

    def clear_peerdata(self, peer_id: ID) -> None:
        """Forget everything about ``peer_id`` (py-libp2p's contract)."""
        super().clear_peerdata(peer_id)
        self._touched.pop(peer_id, None)


class HandlerFailures:
    """How many stream handlers of one host raised, and the last failure (for the node's
    counters)."""

    def __init__(self) -> None:
        self.count = 0
        self.last: str | None = None


_FAILURES_ATTR = "_dndm_handler_failures"


def guard_stream_handlers(host: IHost) -> HandlerFailures:
    """Keep an exception from any of ``host``'s protocol handlers inside its stream.

    py-libp2p runs every inbound stream's handler in the connection's nursery, so an exception
    from a handler (say, identify failing to read the host's own key) ends the connection's
    nursery, the swarm's and the host's.  After this call, on this host only, such an exception
    (any ``Exception``; cancellation passes through) is logged, counted in the returned
    :class:`HandlerFailures`, and the stream is reset; the connection and the host go on.
    Calling it again returns the same counter.
    """
    swarm: Any = host.get_network()
    existing = getattr(swarm, _FAILURES_ATTR, None)
    if isinstance(existing, HandlerFailures):
        return existing
    failures = HandlerFailures()
    original = swarm.common_stream_handler

    async def guarded(stream: INetStream) -> None:
        try:
            await original(stream)
        except Exception as exc:
            failures.count += 1
            protocol = stream.get_protocol()
            failures.last = f"{protocol}: {type(exc).__name__}: {exc}"
            logger.warning(
                "a %s stream handler raised (stream reset, host continues): %r", protocol, exc
            )
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(Exception),
            ):
                await stream.reset()

    swarm.common_stream_handler = guarded
    setattr(swarm, _FAILURES_ATTR, failures)
    return failures


def handler_failures_of(host: IHost) -> HandlerFailures | None:
    """The counter :func:`guard_stream_handlers` installed on ``host``, or None if none was."""
    found = getattr(host.get_network(), _FAILURES_ATTR, None)
    return found if isinstance(found, HandlerFailures) else None
