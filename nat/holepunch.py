"""Hole punching: upgrade relayed connections to direct ones (DCUtR), then leave the relay.

When a relayed connection to a peer appears, one side starts a DCUtR session: the side with the
smaller peer id (both sides compute the same answer, so their attempts never compete; if a
peer starts one anyway, :class:`~protocols.libp2p_fixes.nat.PunchingDCUtR` settles it).
Both sides then dial each other's public addresses from their listen port at the same moment
(TCP simultaneous open through cone NATs).  When a direct connection to the peer is up, on
either side, the relayed connections to it are closed after ``NatConfig.relay_close_grace``
seconds, and the node moves the peer's session to the direct connection (reliable links
resume where they stopped).  When the punch fails (symmetric NATs), everything stays on the
relay.

Figures: attempts, successes, failures, and the seconds from a relayed connection's appearance
to the direct one's (``NatMetrics.direct_times``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID

from nat.config import NatConfig
from nat.conns import connected_peers, has_direct, is_relayed
from nat.metrics import NatMetrics
from protocols.libp2p_fixes.nat import PunchingDCUtR

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from trio_typing import TaskStatus

__all__ = ["HolePuncher"]

logger = logging.getLogger(__name__)

#: Longest wait for the peer's competing session after ours was refused, in seconds.
_ANSWER_WAIT = 30.0


class HolePuncher:
    """Drives DCUtR for one host (see the module docstring)."""

    def __init__(
        self,
        host: IHost,
        config: NatConfig,
        metrics: NatMetrics,
        on_event: Callable[[str, str, str], None] = lambda kind, peer, detail: None,
    ) -> None:
        """Prepare; :meth:`run` starts it.  ``on_event(kind, peer, detail)`` hears of
        ``punch_started``, ``direct`` and ``punch_failed``."""
        self.host = host
        self.config = config
        self.metrics = metrics
        self._on_event = on_event
        self.dcutr = PunchingDCUtR(host)
        self._relayed_since: dict[ID, float] = {}
        self._punching: set[ID] = set()
        self._closing: set[ID] = set()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer hole punches (and start ours when enabled) until cancelled."""
        from libp2p.tools.anyio_service import background_trio_service

        async with background_trio_service(self.dcutr), trio.open_nursery() as nursery:
            await self.dcutr.event_started.wait()
            self._nursery = nursery
            notifee = _Watcher(self)
            self.host.get_network().register_notifee(notifee)
            try:
                for peer_id in connected_peers(self.host):
                    for conn in self.host.get_network().get_connections(peer_id):
                        self.connection_opened(conn)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                notifee.active = False

    # -- connections ------------------------------------------------------------------------------

    def connection_opened(self, conn: INetConn) -> None:
        """A connection appeared: start a punch on a relayed one; leave the relay on a direct
        one that joins a relayed one."""
        peer_id = conn.muxed_conn.peer_id
        nursery = self._nursery
        if nursery is None:
            return
        if is_relayed(conn):
            self._relayed_since.setdefault(peer_id, trio.current_time())
            if self.config.hole_punching and self._initiates(peer_id):
                nursery.start_soon(self._punch_later, peer_id)
        elif self._has_relayed(peer_id):
            since = self._relayed_since.pop(peer_id, None)
            if since is not None:
                elapsed = trio.current_time() - since
                self.metrics.direct_times.append(round(elapsed, 3))
                self._on_event("direct", str(peer_id), f"{elapsed:.3f}")
            if peer_id not in self._closing:
                self._closing.add(peer_id)
                nursery.start_soon(self._leave_relay, peer_id)

    def connection_closed(self, conn: INetConn) -> None:
        """Forget a peer with no relayed connection left."""
        peer_id = conn.muxed_conn.peer_id
        if not self._has_relayed(peer_id):
            self._relayed_since.pop(peer_id, None)

    def _initiates(self, peer_id: ID) -> bool:
        return str(self.host.get_id()) < str(peer_id)

    def _has_relayed(self, peer_id: ID) -> bool:
        return any(is_relayed(c) for c in self.host.get_network().get_connections(peer_id))

    def _has_direct(self, peer_id: ID) -> bool:
        return has_direct(self.host, peer_id)

    # -- punching ---------------------------------------------------------------------------------

    async def _punch_later(self, peer_id: ID) -> None:
        await trio.sleep(self.config.punch_delay)
        if self._has_relayed(peer_id):
            await self.punch(peer_id)

    async def punch(self, peer_id: ID) -> bool:
        """Run one DCUtR session with ``peer_id`` as initiator; True when a direct connection
        is up (at once, if there already is one)."""
        if self._has_direct(peer_id):
            return True
        if peer_id in self._punching:
            return False
        self._punching.add(peer_id)
        self.metrics.punch_attempts += 1
        self._on_event("punch_started", str(peer_id), "")
        try:
            ok = await self.dcutr.punch(peer_id)
            if not ok:
                # The peer's own session (which won over ours) may still be dialling.
                with trio.move_on_after(_ANSWER_WAIT):
                    await self.dcutr.wait_answered(peer_id)
        finally:
            self._punching.discard(peer_id)
        ok = ok or self._has_direct(peer_id)
        if ok:
            self.metrics.punch_successes += 1
        else:
            self.metrics.punch_failures += 1
            self._on_event("punch_failed", str(peer_id), "staying on the relay")
        return ok

    async def _leave_relay(self, peer_id: ID) -> None:
        """Close the relayed connections to ``peer_id`` once the direct one has settled."""
        try:
            await trio.sleep(self.config.relay_close_grace)
            network = self.host.get_network()
            if not self._has_direct(peer_id):
                return
            for conn in list(network.get_connections(peer_id)):
                if is_relayed(conn):
                    try:
                        await conn.close()
                    except Exception as exc:  # already closing: nothing left to do
                        logger.debug("closing the relayed connection to %s: %s", peer_id, exc)
        finally:
            self._closing.discard(peer_id)


class _Watcher(INotifee):
    """Network notifee that tells the hole puncher about connections."""

    def __init__(self, puncher: HolePuncher) -> None:
        self.puncher = puncher
        self.active = True

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """Hand a new connection to the puncher."""
        if self.active:
            self.puncher.connection_opened(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """Hand a closed connection to the puncher."""
        if self.active:
            self.puncher.connection_closed(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""
