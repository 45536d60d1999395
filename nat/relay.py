"""Circuit relay v2: serving as a relay, holding reservations on relays, dialling through them.

* **Serving** (``NatConfig.relay_service``, opt-in): the host answers HOP requests within the
  configured limits (reservations and relayed connections at once, lifetime and bytes of each).
* **Reservations**: :class:`RelayClient` keeps ``NatConfig.reservations`` slots on relays while
  it is told to (the node is private): configured relays first, then bootstrap nodes, then
  connected peers that speak the HOP protocol.  A slot is renewed every ``renew_interval`` on a
  fresh stream; when the relay's connection drops or a renewal fails, the client moves to the
  next relay at once.  :meth:`RelayClient.circuit_addrs` are our addresses through the relays
  (``<relay addr>/p2p/<relay>/p2p-circuit``), for the node's advertised addresses.
* **Dialling** a ``…/p2p-circuit/p2p/<peer>`` address: :meth:`RelayClient.dial`, through the
  circuit transport (py-libp2p does not route such addresses through the swarm).  The node's
  dial path hands them here.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage, PeerId, Status
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from nat.config import NatConfig
from nat.conns import connected_peers
from nat.metrics import NatMetrics
from protocols.addrs import circuit_addr, is_circuit, without_peer
from protocols.errors import Unavailable
from protocols.libp2p_fixes.nat import StopSideCircuit

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn
    from trio_typing import TaskStatus

__all__ = ["HOP_PROTOCOL_ID", "RelayClient", "Reservation"]

logger = logging.getLogger(__name__)

#: Seconds one reservation request (connect, stream, reply) may take.
_RESERVE_TIMEOUT = 10.0
#: Seconds between attempts while no relay could be reserved on.
_RETRY_DELAY = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A slot held on one relay."""

    relay: str
    #: Where we reached the relay (``/ip4/…/tcp/…``, no ``/p2p``).
    relay_addr: str
    #: Unix time the relay said the slot expires.
    expires: int

    @property
    def circuit(self) -> Multiaddr:
        """Our address through this relay (without our own ``/p2p/<id>``)."""
        return circuit_addr(self.relay_addr, self.relay)


class RelayClient:
    """Relay service (when configured), reservations and relayed dialling for one host."""

    def __init__(
        self,
        host: IHost,
        config: NatConfig,
        metrics: NatMetrics,
        *,
        bootstrap: Sequence[str] = (),
        on_change: Callable[[str, str], None] = lambda kind, detail: None,
    ) -> None:
        """Prepare; :meth:`run` starts it.  ``on_change(kind, detail)`` hears of reservations
        made (``reserved``) and lost (``reservation_lost``)."""
        self.host = host
        self.config = config
        self.metrics = metrics
        self._bootstrap = tuple(bootstrap)
        self._on_change = on_change
        limits = RelayLimits(
            duration=config.relay_circuit_duration,
            data=config.relay_circuit_bytes,
            max_circuit_conns=config.relay_max_circuits,
            max_reservations=config.relay_max_reservations,
            reservation_ttl=config.relay_reservation_ttl,
        )
        self.protocol = StopSideCircuit(host, limits=limits, allow_hop=config.relay_service)
        roles = RelayRole.STOP | RelayRole.CLIENT
        if config.relay_service:
            roles |= RelayRole.HOP
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=roles, limits=limits)
        )
        self.reservations: dict[str, Reservation] = {}
        self._wanted = False
        self._wake = trio.Event()
        self._failed: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the relay protocols and keep reservations (while wanted) until cancelled."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self.protocol))
            await self.protocol.event_started.wait()
            task_status.started()
            await self._keep_reservations()

    def want_reservations(self, wanted: bool) -> None:
        """Hold reservations (True: the node is private) or let them go (False)."""
        if wanted != self._wanted:
            self._wanted = wanted
            if not wanted and self.reservations:
                self.reservations.clear()
                self.metrics.reservations_active = 0
                self._on_change("reservation_lost", "no longer needed")
            self.wake()

    def wake(self) -> None:
        """Re-examine reservations now (a connection changed)."""
        self._wake.set()

    # -- dialling ---------------------------------------------------------------------------------

    async def dial(self, addr: Multiaddr) -> INetConn:
        """Connect to ``…/p2p/<relay>/p2p-circuit/p2p/<peer>`` through the relay.

        :raises Unavailable: the relay cannot be reached or refused the connection.
        """
        if not is_circuit(addr):
            raise Unavailable(f"{addr} is not a relayed address")
        self.metrics.relayed_dials += 1
        try:
            return await self.transport.dial(addr)
        except Exception as exc:  # py-libp2p raises assorted errors for a failed relay dial
            raise Unavailable(f"cannot connect through the relay at {addr}: {exc}") from exc

    def circuit_addrs(self) -> list[Multiaddr]:
        """Our relayed addresses, one per reservation held."""
        return [r.circuit for r in self.reservations.values()]

    # -- reservations -----------------------------------------------------------------------------

    async def _keep_reservations(self) -> None:
        for round_ in itertools.count():
            self._wake = trio.Event()
            self._drop_disconnected()
            if self._wanted:
                await self._fill()
            renew_in = self.config.renew_interval
            short = self._wanted and len(self.reservations) < self.config.reservations
            delay = _RETRY_DELAY[min(round_, len(_RETRY_DELAY) - 1)] if short else renew_in
            with trio.move_on_after(delay) as timer:
                await self._wake.wait()
            if timer.cancelled_caught and self._wanted:
                await self._renew_all()

    def _drop_disconnected(self) -> None:
        network = self.host.get_network()
        for relay, reservation in list(self.reservations.items()):
            if not network.get_connections(ID.from_base58(relay)):
                del self.reservations[relay]
                self.metrics.reservations_active = len(self.reservations)
                self.metrics.relay_switches += 1
                self._on_change("reservation_lost", f"relay {relay} disconnected")
                logger.info("lost the relay %s (%s)", relay, reservation.relay_addr)

    async def _renew_all(self) -> None:
        for relay, reservation in list(self.reservations.items()):
            ok = await self._reserve(reservation.relay_addr, relay)
            if not ok and self.reservations.pop(relay, None) is not None:
                self.metrics.reservations_active = len(self.reservations)
                self.metrics.relay_switches += 1
                self._on_change("reservation_lost", f"renewal refused by {relay}")

    async def _fill(self) -> None:
        for addr, relay in self._candidates():
            if len(self.reservations) >= self.config.reservations:
                return
            if relay in self.reservations:
                continue
            await self._reserve(addr, relay)

    def _candidates(self) -> list[tuple[str, str]]:
        """(address without /p2p, relay id): configured relays, bootstrap nodes, then peers."""
        found: dict[str, str] = {}
        own = str(self.host.get_id())
        for text in (*self.config.relays, *self._bootstrap):
            maddr = Multiaddr(text)
            peer = maddr.get_peer_id()
            if peer is not None and peer != own and peer not in found:
                found[str(peer)] = str(without_peer(maddr))
        store = self.host.get_peerstore()
        network = self.host.get_network()
        for peer_id in connected_peers(self.host):
            peer = str(peer_id)
            if peer in found:
                continue
            try:
                protocols = store.get_protocols(peer_id)
            except Exception:
                continue
            if HOP_PROTOCOL_ID not in protocols:
                continue
            for conn in network.get_connections(peer_id):
                addrs = [a for a in conn.get_transport_addresses() if not is_circuit(a)]
                if addrs:
                    found[peer] = str(without_peer(addrs[0]))
                    break
        now = trio.current_time()
        ordered = [(addr, peer) for peer, addr in found.items()]
        # Relays that failed recently go last.
        ordered.sort(key=lambda item: self._failed.get(item[1], -1.0) > now - 60.0)
        return ordered

    async def _reserve(self, addr: str, relay: str) -> bool:
        """Reserve (or renew) a slot on ``relay`` at ``addr``; True when granted."""
        relay_id = ID.from_base58(relay)
        ok = False
        with trio.move_on_after(_RESERVE_TIMEOUT):
            try:
                if not self.host.get_network().get_connections(relay_id):
                    await self.host.connect(info_from_p2p_addr(Multiaddr(f"{addr}/p2p/{relay}")))
                expires = await self._request(relay_id)
            except Exception as exc:  # unreachable, refused, or a broken reply
                logger.info("no reservation on %s at %s: %s", relay, addr, exc)
                expires = None
            if expires is not None:
                new = relay not in self.reservations
                self.reservations[relay] = Reservation(relay, addr, expires)
                self.metrics.reservations_active = len(self.reservations)
                if new:
                    self.metrics.reservations_made += 1
                    self._on_change("reserved", f"{addr}/p2p/{relay}")
                ok = True
        if not ok:
            self.metrics.reservation_failures += 1
            self._failed[relay] = trio.current_time()
        return ok

    async def _request(self, relay_id: ID) -> int | None:
        """One RESERVE exchange on a fresh stream; the expiry, or None when refused."""
        stream = await self.host.new_stream(relay_id, [TProtocol(HOP_PROTOCOL_ID)])
        try:
            request = HopMessage(
                type=HopMessage.RESERVE, peer=PeerId(id=self.host.get_id().to_bytes())
            )
            await write_delimited_msg(stream, request)
            reply: Any = await read_delimited_msg(stream, HopMessage)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await _close_quietly(stream)
        status = reply.status if reply.HasField("status") else Status.OK
        if status != Status.OK:
            logger.info("relay %s refused a reservation: status %s", relay_id, status)
            return None
        return int(reply.reservation.expire) if reply.HasField("reservation") else 0


async def _close_quietly(stream: Any) -> None:
    try:
        await stream.close()
    except Exception as exc:
        logger.debug("closing a relay stream: %s", exc)
