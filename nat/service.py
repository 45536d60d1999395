"""The NAT component of a node: reachability, relays, hole punching and UPnP, run together.

:class:`NatService` owns its parts, runs them in one nursery, reports what happens through an
``on_event`` callback (:class:`NatEvent`) and counts it in :class:`~nat.metrics.NatMetrics`.
It also decides the host's advertised addresses (``host.get_addrs()``, which identify, DHT
provider records and the node's adverts use): public listen addresses, addresses AutoNAT
confirmed, our relayed addresses, then private listen addresses.  An address a peer merely
observed is not advertised until AutoNAT confirmed it.

A node that is private (or, before AutoNAT's verdict, that has no public listen address)
reserves slots on relays; one found public lets them go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from multiaddr import Multiaddr

from nat.config import NatConfig
from nat.holepunch import HolePuncher
from nat.metrics import NatMetrics
from nat.reachability import PUBLIC, UNKNOWN, Reachability
from nat.relay import RelayClient
from nat.upnp import UpnpMapper
from protocols.addrs import is_circuit, is_public, without_peer
from protocols.libp2p_fixes.nat import advertise_addrs

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.peer.id import ID
    from trio_typing import TaskStatus

__all__ = ["NatEvent", "NatService"]


@dataclass(frozen=True, slots=True)
class NatEvent:
    """Something the NAT component noticed.

    ``kind``: ``reachability`` (detail: ``public``/``private``/``unknown``), ``reserved`` and
    ``reservation_lost`` (detail: the relay), ``punch_started``, ``direct`` (detail: seconds
    since the relayed connection appeared) and ``punch_failed`` (``peer`` set),
    ``upnp_mapped`` and ``upnp_unavailable``.
    """

    kind: str
    peer: str | None = None
    detail: str = ""


class NatService:
    """Reachability, relays, hole punching and UPnP for one host (see the module docstring)."""

    def __init__(
        self,
        host: IHost,
        config: NatConfig | None = None,
        *,
        bootstrap: Sequence[str] = (),
        on_event: Callable[[NatEvent], None] = lambda event: None,
    ) -> None:
        """Prepare the parts for ``host``; :meth:`run` starts them."""
        self.host = host
        self.config = config if config is not None else NatConfig()
        self.metrics = NatMetrics()
        self._on_event = on_event
        self.upnp = UpnpMapper(host, self.metrics, self._relay_change) if self.config.upnp else None
        self.reachability = Reachability(
            host,
            self.config,
            self.metrics,
            self._reachability_changed,
            extra_candidates=lambda: list(self.upnp.mapped) if self.upnp is not None else [],
        )
        self.relay = RelayClient(
            host, self.config, self.metrics, bootstrap=bootstrap, on_change=self._relay_change
        )
        self.puncher = HolePuncher(host, self.config, self.metrics, self._punch_event)
        #: Set whenever the status or the advertised addresses change.
        self.changed = trio.Event()

    @property
    def status(self) -> str:
        """``"public"``, ``"private"`` or ``"unknown"``."""
        return self.reachability.status

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every enabled part until cancelled; the host advertises our addresses meanwhile."""
        notifee = _Watcher(self)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.relay.run)
            await nursery.start(self.puncher.run)
            if self.upnp is not None:
                await nursery.start(self.upnp.run)
            advertise_addrs(self.host, self.host_addrs)
            self.host.get_network().register_notifee(notifee)
            try:
                self._update_relay_wish()
                await nursery.start(self.reachability.run)
                task_status.started()
                await trio.sleep_forever()
            finally:
                notifee.active = False
                advertise_addrs(self.host, None)

    # -- addresses --------------------------------------------------------------------------------

    def advertised_addrs(self) -> list[Multiaddr]:
        """Our addresses for others, best first (no ``/p2p/<own id>``): public listen
        addresses, confirmed ones, relayed ones, then private listen addresses."""
        listen = self._listen()
        public = [a for a in listen if is_public(a)]
        private = [a for a in listen if not is_public(a)]
        return _unique(
            [*public, *self.reachability.confirmed, *self.relay.circuit_addrs(), *private]
        )

    def host_addrs(self) -> list[Multiaddr]:
        """What ``host.get_addrs()`` returns (identify, provider records): the listen addresses
        first (DCUtR binds its dials to the first), then confirmed and relayed ones."""
        return _unique([*self._listen(), *self.reachability.confirmed, *self.relay.circuit_addrs()])

    def _listen(self) -> list[Multiaddr]:
        return [without_peer(a) for a in self.host.get_transport_addrs() if not is_circuit(a)]

    async def dial(self, addr: Multiaddr) -> None:
        """Connect to a relayed address ``…/p2p/<relay>/p2p-circuit/p2p/<peer>``.

        :raises Unavailable: the relay cannot be reached or refused.
        """
        await self.relay.dial(addr)

    async def punch(self, peer_id: ID) -> bool:
        """Try to upgrade the relayed connection to ``peer_id`` now; True when direct."""
        return await self.puncher.punch(peer_id)

    # -- reactions --------------------------------------------------------------------------------

    def _update_relay_wish(self) -> None:
        mode = self.config.relay_client
        if mode == "never":
            wanted = False
        elif mode == "always":
            wanted = True
        elif self.status == UNKNOWN:
            listen = [a for a in self.host.get_transport_addrs() if not is_circuit(a)]
            wanted = not any(is_public(a) for a in listen)
        else:
            wanted = self.status != PUBLIC
        self.relay.want_reservations(wanted)

    def _reachability_changed(self, status: str) -> None:
        self._update_relay_wish()
        self._emit(NatEvent("reachability", None, status))

    def _relay_change(self, kind: str, detail: str) -> None:
        self._emit(NatEvent(kind, None, detail))

    def _punch_event(self, kind: str, peer: str, detail: str) -> None:
        self._emit(NatEvent(kind, peer, detail))

    def _emit(self, event: NatEvent) -> None:
        self.changed.set()
        self.changed = trio.Event()
        self._on_event(event)

    def connection_changed(self) -> None:
        """A peer connected or left: reservations and reachability look again."""
        self.relay.wake()
        self.reachability.wake()


def _unique(addrs: list[Multiaddr]) -> list[Multiaddr]:
    found: dict[str, Multiaddr] = {}
    for addr in addrs:
        found.setdefault(str(addr), addr)
    return list(found.values())


class _Watcher(INotifee):
    """Network notifee: connections coming and going wake the service's loops."""

    def __init__(self, service: NatService) -> None:
        self.service = service
        self.active = True

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """A connection opened."""
        if self.active:
            self.service.connection_changed()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """A connection closed."""
        if self.active:
            self.service.connection_changed()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Not used."""

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        """Not used."""
