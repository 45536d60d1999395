"""UPnP port mapping: ask the LAN's Internet Gateway Device to forward our listen port.

Off by default (``NatConfig.upnp``).  On start the gateway is looked for (SSDP, a few seconds
at most); when one answers with a public external IP, each TCP listen port is mapped to the
same external port, and ``/ip4/<external ip>/tcp/<port>`` becomes a candidate address for
AutoNAT to confirm.  Mappings are removed when the component stops, however it stops.

py-libp2p's ``UpnpManager`` is not used: it calls 198.18.0.0/15 (and any "private" range per
:mod:`ipaddress`) a double NAT and gives up, and it logs tracebacks for normal failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from multiaddr import Multiaddr

from nat.metrics import NatMetrics
from protocols.addrs import host_ip, is_circuit, is_public, tcp_port

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from trio_typing import TaskStatus

__all__ = ["UpnpMapper"]

logger = logging.getLogger(__name__)

#: Milliseconds miniupnpc waits for gateways to answer SSDP.
_DISCOVER_MS = 2000
_DESCRIPTION = "dndm-p2p"


class UpnpMapper:
    """Maps the host's TCP listen ports on a UPnP gateway while it runs."""

    def __init__(
        self,
        host: IHost,
        metrics: NatMetrics,
        on_change: Callable[[str, str], None] = lambda kind, detail: None,
        gateway_factory: Callable[[], Any] | None = None,
    ) -> None:
        """Prepare; :meth:`run` maps.  ``on_change`` hears ``upnp_mapped``/``upnp_unavailable``."""
        self.host = host
        self.metrics = metrics
        self._on_change = on_change
        self._factory = gateway_factory
        #: ``/ip4/<external ip>/tcp/<port>`` for each mapping held.
        self.mapped: list[Multiaddr] = []

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Map the ports, report, and hold the mappings until cancelled; then remove them."""
        task_status.started()
        gateway = await trio.to_thread.run_sync(self._discover)
        if gateway is None:
            self._on_change("upnp_unavailable", "no UPnP gateway with a public address")
            await trio.sleep_forever()
        external, lan_ip = gateway.externalipaddress(), gateway.lanaddr
        ports = sorted(
            {
                port
                for addr in self.host.get_transport_addrs()
                if not is_circuit(addr) and (port := tcp_port(addr)) is not None
            }
        )
        held: list[int] = []
        try:
            for port in ports:
                ok = await trio.to_thread.run_sync(_add, gateway, port, lan_ip)
                if ok:
                    held.append(port)
                    self.mapped.append(Multiaddr(f"/ip4/{external}/tcp/{port}"))
            self.metrics.upnp_mapped = bool(held)
            if held:
                self._on_change("upnp_mapped", " ".join(str(a) for a in self.mapped))
            else:
                self._on_change("upnp_unavailable", "the gateway refused every mapping")
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                for port in held:
                    await trio.to_thread.run_sync(_delete, gateway, port)
            self.mapped.clear()
            self.metrics.upnp_mapped = False

    def _discover(self) -> Any:
        """The gateway (a ``miniupnpc.UPnP`` with an IGD selected), or None."""
        try:
            if self._factory is not None:
                gateway = self._factory()
            else:
                import miniupnpc  # type: ignore[import-not-found]

                gateway = miniupnpc.UPnP()
                gateway.discoverdelay = _DISCOVER_MS
            if gateway.discover() <= 0:
                return None
            gateway.selectigd()
            external = gateway.externalipaddress()
        except Exception as exc:  # miniupnpc raises plain Exception for "no IGD" and the like
            logger.info("no UPnP gateway: %s", exc)
            return None
        if (
            not external
            or not is_public(Multiaddr(f"/ip4/{external}"))
            or host_ip(Multiaddr(f"/ip4/{external}")) is None
        ):
            logger.info("the UPnP gateway has no public address (%s)", external)
            return None
        return gateway


def _add(gateway: Any, port: int, lan_ip: str) -> bool:
    try:
        return bool(gateway.addportmapping(port, "TCP", lan_ip, port, _DESCRIPTION, ""))
    except Exception as exc:
        logger.info("UPnP mapping of port %d refused: %s", port, exc)
        return False


def _delete(gateway: Any, port: int) -> None:
    try:
        gateway.deleteportmapping(port, "TCP")
    except Exception as exc:
        logger.warning("removing the UPnP mapping of port %d failed: %s", port, exc)
