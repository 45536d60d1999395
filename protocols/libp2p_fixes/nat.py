"""Fixes for py-libp2p's NAT traversal: AutoNAT v1, DCUtR, circuit relay v2, advertised addresses.

Each fix is a subclass constructed by the caller for one host (:class:`DialBackAutoNAT`,
:class:`PunchingDCUtR`, :class:`StopSideCircuit`) or an instance attribute on one host
(:func:`advertise_addrs`); py-libp2p's classes are never changed.  The defects are listed in the
index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.connection_types import ConnectionType
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from multiaddr import Multiaddr

from protocols.addrs import is_public, same_private_network, without_peer

__all__ = [
    "PUNCH_DIAL_TIMEOUT",
    "DialBackAutoNAT",
    "PunchingDCUtR",
    "StopSideCircuit",
    "advertise_addrs",
    "dial_back",
]

logger = logging.getLogger(__name__)

#: Seconds a hole-punch dial may take (py-libp2p: 10).
PUNCH_DIAL_TIMEOUT = 3


async def dial_back(host: Any, peer_id: ID, addr: Multiaddr, seconds: float) -> bool:
    """Dial ``addr`` on a new connection and check, with a Noise handshake, that ``peer_id``
    answers there; close it again.  Nothing is added to the swarm.  True if it answered."""
    network = host.get_network()
    if not isinstance(network, Swarm):
        return False
    transport = network.transport_manager.transport_for_dialing(addr)
    if transport is None:
        return False
    raw = None
    try:
        with trio.move_on_after(seconds):
            raw = await transport.dial(addr)
            secured = await network.upgrader.upgrade_security(raw, True, peer_id)
            await secured.close()
            return True
    except Exception as exc:  # refused, reset, wrong peer: all mean "not reachable there"
        logger.debug("dial-back to %s at %s failed: %s", peer_id, addr, exc)
    finally:
        if raw is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await raw.close()
                except Exception as exc:
                    logger.debug("closing the dial-back connection: %s", exc)
    return False


class DialBackAutoNAT(AutoNATService):
    """An AutoNAT v1 service whose dial-back is a new connection to the claimed address
    (:func:`dial_back`), never the connection the request came on."""

    def __init__(self, host: Any, *, serve: bool, timeout: float) -> None:
        """Serve requests when ``serve``; each dial-back is bounded by ``timeout`` seconds."""
        super().__init__(host, serve=serve, confirmations=1)
        self.timeout = timeout
        #: Dial-backs attempted and succeeded, for metrics.
        self.dialbacks = 0
        self.dialback_successes = 0

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        for raw in addrs:
            try:
                addr = Multiaddr(raw)
            except Exception:
                continue
            self.dialbacks += 1
            if await dial_back(self.host, peer_id, addr, self.timeout):
                self.dialback_successes += 1
                return bytes(raw)
        return None


class PunchingDCUtR(DCUtRProtocol):
    """DCUtR that punches only when told (:meth:`punch`), never dials a relayed peer
    "unilaterally", dials only :meth:`dialable` addresses within :data:`PUNCH_DIAL_TIMEOUT`,
    refuses a peer's session while its own to that peer runs when it has the smaller peer id,
    and leaves the relayed connection to the caller."""

    def __init__(self, host: Any) -> None:
        """DCUtR on ``host``; the caller decides when to punch (:meth:`punch`)."""
        super().__init__(host, dial_timeout=PUNCH_DIAL_TIMEOUT)
        self._initiating: set[ID] = set()
        self._answering: dict[ID, trio.Event] = {}

    async def wait_answered(self, peer_id: ID) -> None:
        """Return when no session started by ``peer_id`` is running here."""
        event = self._answering.get(peer_id)
        if event is not None:
            await event.wait()

    async def punch(self, peer_id: ID) -> bool:
        """Run one hole-punch session as initiator; True if a direct connection is up."""
        self._initiating.add(peer_id)
        try:
            return await self.initiate_hole_punch(peer_id)
        finally:
            self._initiating.discard(peer_id)

    async def _auto_drive_loop(self) -> None:
        await trio.sleep_forever()

    async def _try_unilateral_upgrade(self, peer_id: ID) -> bool:
        return False

    def _schedule_relay_close(self, peer_id: ID) -> None:
        return

    def dialable(self, addr: Multiaddr) -> bool:
        """True for an address worth a hole-punch dial: public, or in our own LAN."""
        if is_public(addr):
            return True
        return same_private_network(addr, self.host.get_transport_addrs())

    async def _dial_peer(
        self,
        peer_id: ID,
        addr: Multiaddr,
        source: tuple[str, int] | None = None,
        as_responder: bool = False,
    ) -> None:
        if not self.dialable(addr):
            logger.debug("not dialling unroutable %s of %s", addr, peer_id)
            return
        if not is_public(addr):
            # Our own LAN: no NAT between us, so no simultaneous open either (two dials bound
            # to the same two ports collide, and one lands on a listener with both sides in
            # the responder role).  The session's initiator dials plainly, the other waits.
            if as_responder:
                await super()._dial_peer(peer_id, addr, None, False)
            return
        await super()._dial_peer(peer_id, addr, source, as_responder)

    async def _handle_dcutr_stream(self, stream: INetStream) -> None:
        remote = stream.muxed_conn.peer_id
        if remote in self._initiating and str(self.host.get_id()) < str(remote):
            # Both sides started a session: ours wins, theirs is refused (its dials would
            # collide with ours on the same 4-tuple).
            logger.debug("refusing %s's concurrent hole punch: ours goes on", remote)
            await stream.reset()
            return
        done = self._answering[remote] = trio.Event()
        try:
            await super()._handle_dcutr_stream(stream)
        finally:
            done.set()
            if self._answering.get(remote) is done:
                del self._answering[remote]


class StopSideCircuit(CircuitV2Protocol):
    """Circuit relay v2 whose relayed inbound connections have the address
    ``/p2p/<relay>/p2p-circuit/p2p/<peer>``, naming the relay they came through."""

    async def handle_incoming_connection(self, stream: INetStream, remote_peer_id: bytes) -> None:
        """Accept a relayed connection, then give it ``/p2p/<relay>/p2p-circuit/p2p/<peer>``."""
        await super().handle_incoming_connection(stream, remote_peer_id)
        relay = stream.muxed_conn.peer_id
        peer = ID(remote_peer_id)
        addr = Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{peer}")
        for conn in self.host.get_network().get_connections(peer):
            if isinstance(conn, SwarmConn) and any(
                str(a).startswith(f"/p2p/{self.host.get_id()}/p2p-circuit")
                for a in conn.get_transport_addresses()
            ):
                conn.set_transport_info([addr], ConnectionType.RELAYED)


def advertise_addrs(host: Any, addrs: Callable[[], list[Multiaddr]] | None) -> None:
    """Make ``host.get_addrs()`` return ``addrs()`` (relayed ones intact), each ending in
    ``/p2p/<own id>``; None restores py-libp2p's own method."""
    if addrs is None:
        host.__dict__.pop("get_addrs", None)
        return
    suffix = Multiaddr(f"/p2p/{host.get_id()}")

    def get_addrs() -> list[Multiaddr]:
        return [without_peer(addr).encapsulate(suffix) for addr in addrs()]

    host.get_addrs = get_addrs
