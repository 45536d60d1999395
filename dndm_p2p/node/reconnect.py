"""Reconnection: the peers a node keeps connected, and the loops that dial them again.

A peer is *wanted* when the application (``Node.connect(keep=True)``) or the configuration
(``config.peers``) asked for it; the node also reconnects to any peer it had links with.  Each
peer has at most one reconnection loop at a time.  It waits ``config.reconnect_initial``
seconds, doubling up to ``config.reconnect_max`` (each wait with ±20 % jitter), tries every
address known for the peer, and stops as soon as a session with the peer runs.  A wanted peer is
tried for ever; another one ``config.reconnect_attempts`` times, after which the loop reports
:class:`Unavailable` and gives up.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable

import trio
from libp2p.peer.id import ID

from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import Closed, ConfigError, DndmError, Unavailable

__all__ = ["Reconnector", "peer_of"]


class Reconnector:
    """The wanted peers of one node and their reconnection loops (see the module docstring).

    ``dial(addr, keep)`` connects (raising :class:`Unavailable` or :class:`Closed`),
    ``connected(peer)`` tells whether a session with the peer runs, ``known_addrs(peer_id)``
    gives the peerstore's addresses of a peer, and ``closing()`` whether the node is closing.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        dial: Callable[[str, bool], Awaitable[str]],
        connected: Callable[[str], bool],
        known_addrs: Callable[[ID], list[str]],
        closing: Callable[[], bool],
        report_error: Callable[[DndmError, str], None],
    ) -> None:
        self._config = config
        self._dial = dial
        self._connected = connected
        self._known_addrs = known_addrs
        self._closing = closing
        self._report_error = report_error
        #: Peers the application or the configuration asked for, with their addresses.
        self._wanted: dict[str, list[str]] = {}
        #: The running reconnection loops, by peer.
        self.pending: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Run reconnection loops in ``nursery`` from now on."""
        self._nursery = nursery

    def stop(self) -> None:
        """Cancel every reconnection loop; no new one starts."""
        self._nursery = None
        for scope in self.pending.values():
            scope.cancel()

    @property
    def wanted_peers(self) -> frozenset[str]:
        """Peers the application or the configuration asked to keep connected."""
        return frozenset(self._wanted)

    def is_wanted(self, peer: str) -> bool:
        """True when ``peer`` is to be kept connected."""
        return peer in self._wanted

    def want(self, peer: str, addr: str) -> None:
        """Keep ``peer`` connected, dialling it (among others) at ``addr``."""
        addrs = self._wanted.setdefault(peer, [])
        if addr not in addrs:
            addrs.append(addr)

    def schedule(self, peer: str, first_delay: float | None = None) -> None:
        """Start reconnecting to ``peer`` (unless a loop already runs for it); the first wait
        is ``first_delay`` seconds when given."""
        if self._closing() or self._nursery is None or peer in self.pending:
            return
        scope = trio.CancelScope()
        self.pending[peer] = scope
        self._nursery.start_soon(self._reconnect, peer, scope, first_delay)

    async def _reconnect(
        self, peer: str, scope: trio.CancelScope, first_delay: float | None
    ) -> None:
        config = self._config
        explicit = peer in self._wanted
        limit = None if explicit else config.reconnect_attempts
        delay = config.reconnect_initial
        try:
            with scope:
                for attempt in itertools.count(1):
                    wait = delay if first_delay is None or attempt > 1 else first_delay
                    await trio.sleep(wait * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, config.reconnect_max)
                    if self._connected(peer):
                        return
                    for addr in self._addresses_of(peer):
                        try:
                            await self._dial(addr, explicit)
                        except (Unavailable, Closed):
                            continue
                        return
                    if limit is not None and attempt >= limit:
                        self._report_error(Unavailable(f"gave up reconnecting to {peer}"), peer)
                        return
        finally:
            if self.pending.get(peer) is scope:
                del self.pending[peer]

    def _addresses_of(self, peer: str) -> list[str]:
        if peer in self._wanted:
            return list(self._wanted[peer])
        try:
            peer_id = ID.from_base58(peer)
        except ValueError:
            return []
        addrs = self._known_addrs(peer_id)
        return [f"{addr}/p2p/{peer}" for addr in addrs if "/p2p/" not in addr]


def peer_of(addr: str) -> str:
    """The peer id of a ``/…/p2p/<id>`` multiaddr; raises :class:`ConfigError` without one."""
    _, sep, peer = addr.rpartition("/p2p/")
    if not sep or not peer or "/" in peer:
        raise ConfigError(f"{addr!r} has no /p2p/<peer id> part")
    return peer
