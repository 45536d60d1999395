"""Reachability: is this node publicly dialable?  AutoNAT, with dial-backs that really dial.

The node asks the peers it is *directly* connected to (never over a relay) and that speak
AutoNAT to dial it back at its candidate addresses: its listen addresses, and for each IP that
peers observed it at (identify), that IP with its listen port (NATs commonly keep the port of a
mapping).  Each server answers with the address it reached us at, or that it reached none.
``NatConfig.autonat_confirmations`` servers agreeing decide the status: ``public`` (and the
addresses they reached are *confirmed*, and advertised), or ``private``.  Until then it is
``unknown``.  An observed address is advertised only once confirmed this way.

Checks run as soon as servers are connected, again after a growing delay while the status is
unknown or new servers appear, and every ``autonat_interval`` seconds after a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from nat.config import NatConfig
from nat.conns import connected_peers, has_direct
from nat.metrics import NatMetrics
from protocols.addrs import host_ip, is_circuit, tcp_port, without_peer
from protocols.libp2p_fixes.nat import DialBackAutoNAT

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from trio_typing import TaskStatus

__all__ = ["PRIVATE", "PUBLIC", "UNKNOWN", "Reachability"]

UNKNOWN = "unknown"
PUBLIC = "public"
PRIVATE = "private"

logger = logging.getLogger(__name__)

#: Most servers asked in one check.
_MAX_SERVERS = 8
#: Delays between checks while the status is unknown.
_EARLY = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class Reachability:
    """The node's reachability (see the module docstring)."""

    def __init__(
        self,
        host: IHost,
        config: NatConfig,
        metrics: NatMetrics,
        on_change: Callable[[str], None],
        extra_candidates: Callable[[], list[Multiaddr]] = list,
    ) -> None:
        """Prepare; :meth:`run` checks.  ``on_change(status)`` hears of every change;
        ``extra_candidates`` adds addresses to have dialled back (a UPnP mapping, say)."""
        self.host = host
        self.config = config
        self.metrics = metrics
        self._on_change = on_change
        self._extra = extra_candidates
        self.service = DialBackAutoNAT(
            host, serve=config.autonat_server, timeout=config.dialback_timeout
        )
        self.status = UNKNOWN
        #: Addresses dialled back successfully by enough servers: safe to advertise.
        self.confirmed: list[Multiaddr] = []
        self._verdicts: dict[str, tuple[bool, bytes | None]] = {}
        self._wake = trio.Event()

    def wake(self) -> None:
        """Check again soon (a new peer connected)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check reachability now and then, until cancelled."""
        task_status.started()
        if not self.config.autonat:
            await trio.sleep_forever()
        early = 0
        while True:
            self._wake = trio.Event()
            asked = await self.check()
            if self.status == UNKNOWN or not asked:
                delay = _EARLY[min(early, len(_EARLY) - 1)]
                early += 1
            else:
                delay = self.config.autonat_interval
            with trio.move_on_after(delay):
                await self._wake.wait()
                # A new peer: give identify a moment to learn its protocols.
                await trio.sleep(0.5)

    def candidates(self) -> list[Multiaddr]:
        """Addresses to have dialled back: listen addresses and predicted external ones."""
        listen = [without_peer(a) for a in self.host.get_transport_addrs() if not is_circuit(a)]
        found = {str(a): a for a in listen}
        ports = {p for p in (tcp_port(a) for a in listen) if p is not None}
        manager = getattr(self.host, "_observed_addr_manager", None)
        observed: list[Multiaddr] = []
        if manager is not None:
            try:
                observed = list(manager.addrs(min_observers=1))
            except Exception as exc:  # py-libp2p internals: never let them stop a check
                logger.debug("observed addresses unavailable: %s", exc)
        for addr in observed:
            ip = host_ip(addr)
            if ip is None:
                continue
            family = "ip4" if ip.version == 4 else "ip6"
            for port in sorted(ports):
                guess = Multiaddr(f"/{family}/{ip}/tcp/{port}")
                found.setdefault(str(guess), guess)
        for addr in self._extra():
            found.setdefault(str(addr), addr)
        return list(found.values())

    def servers(self) -> list[ID]:
        """Directly connected peers that speak AutoNAT."""
        store = self.host.get_peerstore()
        found = []
        for peer_id in connected_peers(self.host):
            try:
                if AUTONAT_PROTOCOL_ID not in store.get_protocols(peer_id):
                    continue
            except Exception:
                continue
            if has_direct(self.host, peer_id):
                found.append(peer_id)
        return found[:_MAX_SERVERS]

    async def check(self) -> int:
        """Ask every server once (in parallel); update the status.  Returns servers asked."""
        servers = self.servers()
        if not servers:
            return 0
        addrs = [a.to_bytes() for a in self.candidates()]
        timeout = self.config.dialback_timeout * 2 + 5

        async def ask(server: ID) -> None:
            self.metrics.autonat_queries += 1
            try:
                status, addr = await self.service.query_server(server, addrs, timeout=timeout)
            except Exception as exc:  # the server went away or does not answer
                logger.debug("AutoNAT query to %s failed: %s", server, exc)
                return
            self._verdicts[str(server)] = (status == Message.OK, addr)

        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(ask, server)
        self._decide()
        return len(servers)

    def _decide(self) -> None:
        needed = self.config.autonat_confirmations
        reached: dict[str, int] = {}
        successes = failures = 0
        for ok, addr in self._verdicts.values():
            if ok:
                successes += 1
                if addr is not None:
                    text = str(Multiaddr(addr))
                    reached[text] = reached.get(text, 0) + 1
            else:
                failures += 1
        status = self.status
        if successes >= needed and successes >= failures:
            status = PUBLIC
            self.confirmed = [Multiaddr(a) for a, n in reached.items() if n >= needed]
        elif failures >= needed and failures > successes:
            status = PRIVATE
            self.confirmed = []
        if status != self.status:
            logger.info("reachability: %s -> %s", self.status, status)
            self.status = status
            self.metrics.reachability = status
            self.metrics.reachability_changes += 1
            self._on_change(status)
