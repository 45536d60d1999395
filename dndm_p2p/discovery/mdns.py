"""LAN discovery with mDNS (the libp2p mDNS spec), bound to chosen interface addresses only.

:class:`MdnsDiscovery` announces the host under ``_p2p._udp.local.`` with one
``dnsaddr=<multiaddr>/p2p/<peer id>`` TXT string per listen address (as go-libp2p does; the
``dnsaddrN`` keys of py-libp2p peers are read too), browses the same service type, and reports
every other peer it finds to a callback, in trio::

    mdns = MdnsDiscovery(host, ["127.0.0.1"], on_peer)   # on_peer(peer_id, multiaddrs)
    await nursery.start(mdns.run)                        # runs until cancelled

Why not py-libp2p's own ``MDNSDiscovery``: it opens ``Zeroconf()`` on every interface (it
multicasts on the LAN whatever the node was told), writes the peerstore from zeroconf's
thread, and reports peers through a process-global registry that every host of the process
shares.  Here instead:

* zeroconf is opened on the given interface addresses only (``interfaces=[...]``), so queries
  and announcements leave through those interfaces and no other; its A records carry those
  addresses, and only listen addresses reachable there are announced (a wildcard listen
  address is announced as each interface address of its family).
* Each instance has its own zeroconf and its own listener: several nodes in one process each
  get only their own discoveries, and a node never reports itself.
* zeroconf calls the listener in its browser thread.  The listener never touches trio or the
  host there: it hands each find to trio with ``TrioToken.run_sync_soon`` (which never blocks
  the thread, so shutting down cannot deadlock), and ``on_peer`` runs in :meth:`run`'s task.
  The callback's peerstore, dialling and linking decisions belong to the caller.
* Cancelling :meth:`run` withdraws the announcement (mDNS goodbye packets), stops the browser
  and closes zeroconf: no thread or task is left.

The service instance name is 32 random lowercase letters and digits (as the spec asks); with
that many, a collision is out of the question, so the name is registered without the
probing round (``cooperating_responders``), which would add about 1.7 s to every start.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import string
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from multiaddr import Multiaddr
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

from dndm_p2p.discovery.config import interface_addresses
from dndm_p2p.errors import ConfigError, Unavailable
from dndm_p2p.host.build import listen_addrs
from dndm_p2p.nurseries import open_owned_nursery

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from trio_typing import TaskStatus

__all__ = ["SERVICE_TYPE", "MdnsDiscovery", "parse_txt"]

logger = logging.getLogger(__name__)

#: The DNS-SD service type of libp2p peers (libp2p mDNS spec).
SERVICE_TYPE = "_p2p._udp.local."
#: How long the browser thread waits for a found service's records, in milliseconds.
_INFO_TIMEOUT_MS = 3000
#: Finds waiting for trio; beyond it new ones are dropped (counted in ``dropped``).
_QUEUE_SIZE = 256
#: Longest TXT string (a DNS character-string holds 255 bytes).
_MAX_TXT = 255
#: Most services remembered (to report a peer again only when its addresses change).
_MAX_KNOWN = 4096


@dataclass(frozen=True, slots=True)
class _Found:
    peer: str
    addrs: tuple[str, ...]


def parse_txt(text: bytes) -> tuple[str | None, tuple[str, ...]]:
    """The peer id and multiaddrs (without ``/p2p``) of a libp2p mDNS TXT record.

    ``text`` is the raw record: length-prefixed strings ``dnsaddr=<multiaddr>/p2p/<id>`` (or
    ``dnsaddr2=…`` from py-libp2p).  Strings that are malformed or name another peer than the
    first are skipped; ``(None, ())`` if none is usable.
    """
    peer: str | None = None
    addrs: list[str] = []
    pos = 0
    while pos < len(text):
        length = text[pos]
        item = text[pos + 1 : pos + 1 + length]
        pos += 1 + length
        key, sep, value = item.partition(b"=")
        if not sep or not key.startswith(b"dnsaddr"):
            continue
        try:
            addr = Multiaddr(value.decode())
            owner = addr.get_peer_id()
            bare = addr.decapsulate(Multiaddr(f"/p2p/{owner}")) if owner else None
        except Exception:  # a peer's malformed string is skipped, not fatal
            continue
        if owner is None or bare is None or not str(bare) or (peer is not None and owner != peer):
            continue
        peer = owner
        if str(bare) not in addrs:
            addrs.append(str(bare))
    return (peer, tuple(addrs)) if peer is not None else (None, ())


def _txt(addrs: Sequence[str]) -> bytes:
    items = [f"dnsaddr={addr}".encode() for addr in addrs]
    return b"".join(bytes((len(item),)) + item for item in items if len(item) <= _MAX_TXT)


class _Listener(ServiceListener):
    """Runs in zeroconf's browser thread; hands finds to trio without blocking."""

    def __init__(self, own_name: str, own_peer: str, deliver: Callable[[_Found], None]) -> None:
        self._own_name = own_name
        self._own_peer = own_peer
        self._deliver = deliver
        self._known: dict[str, _Found] = {}
        self._lock = threading.Lock()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._look(zc, type_, name)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._look(zc, type_, name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        with self._lock:
            self._known.pop(name, None)  # if it comes back, report it again

    def _look(self, zc: Zeroconf, type_: str, name: str) -> None:
        if name == self._own_name:
            return
        try:
            info = zc.get_service_info(type_, name, timeout=_INFO_TIMEOUT_MS)
        except Exception:  # zeroconf closing under us, or a bug: the browser thread goes on
            logger.warning("mDNS: cannot resolve %s", name, exc_info=True)
            return
        if info is None or not info.text:
            return
        peer, addrs = parse_txt(info.text)
        if peer is None or peer == self._own_peer or not addrs:
            return
        found = _Found(peer, addrs)
        with self._lock:
            if self._known.get(name) == found:
                return
            if len(self._known) >= _MAX_KNOWN:
                self._known.pop(next(iter(self._known)))
            self._known[name] = found
        self._deliver(found)


class MdnsDiscovery:
    """Announce a host and find other libp2p peers with mDNS on chosen interfaces only.

    ``interfaces`` are IP addresses of this machine's interfaces (``"127.0.0.1"``,
    ``"192.168.1.5"``); ``on_peer(peer_id, multiaddrs)`` is called in trio, from :meth:`run`'s
    task, for each peer found (again when its addresses change), with the base58 peer id and
    its multiaddrs without ``/p2p``.  An exception from ``on_peer`` ends :meth:`run`.
    """

    def __init__(
        self,
        host: IHost,
        interfaces: Sequence[str],
        on_peer: Callable[[str, tuple[str, ...]], None],
    ) -> None:
        self._host = host
        self._interfaces = interface_addresses(interfaces)
        self._on_peer = on_peer
        self.service_name = (
            "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32))
            + "."
            + SERVICE_TYPE
        )
        #: Finds dropped because trio did not take them fast enough.
        self.dropped = 0
        self._zeroconf: Zeroconf | None = None  # while running

    def announced_addrs(self) -> list[str]:
        """The host's listen addresses reachable on the interfaces, with ``/p2p/<id>``."""
        found: list[str] = []
        for addr in listen_addrs(self._host):
            text = str(addr)
            parts = text.split("/")  # ['', 'ip4', '<ip>', 'tcp', '<port>', ..., 'p2p', '<id>']
            if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
                continue
            ip = ipaddress.ip_address(parts[2])
            if ip.is_unspecified:
                candidates = [i for i in self._interfaces if i.version == ip.version]
            else:
                candidates = [ip] if ip in self._interfaces else []
            for candidate in candidates:
                rest = "/".join(parts[3:])
                entry = f"/{parts[1]}/{candidate}/{rest}"
                if entry not in found:
                    found.append(entry)
        return found

    def _service_info(self) -> ServiceInfo:
        addrs = self.announced_addrs()
        if not addrs:
            shown = ", ".join(str(i) for i in self._interfaces)
            raise ConfigError(
                f"mDNS on {shown}: the node listens on no address of these interfaces "
                f"({', '.join(str(a) for a in listen_addrs(self._host))})"
            )
        port = int(addrs[0].split("/")[4])
        host_name = self.service_name.split(".")[0] + ".local."
        return ServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            port=port,
            properties=_txt(addrs),
            server=host_name,
            addresses=[i.packed for i in self._interfaces],
        )

    def _open_zeroconf(self) -> Zeroconf:
        versions = {i.version for i in self._interfaces}
        ip_version = (
            IPVersion.All
            if len(versions) == 2
            else IPVersion.V6Only
            if versions == {6}
            else IPVersion.V4Only
        )
        shown = ", ".join(str(i) for i in self._interfaces)
        try:
            zc = Zeroconf(interfaces=[str(i) for i in self._interfaces], ip_version=ip_version)
        except OSError as exc:
            raise Unavailable(f"mDNS cannot open its sockets on {shown}: {exc}") from exc
        return zc

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce the host and report peers until cancelled; then withdraw and close.

        Started (``task_status.started()``) once zeroconf runs and the browser is looking; the
        announcement goes out meanwhile.  Raises :class:`ConfigError` if the host listens on none
        of the interfaces, :class:`Unavailable` if the mDNS sockets cannot be opened.
        """
        info = self._service_info()
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[_Found](_QUEUE_SIZE)

        def put(found: _Found) -> None:  # runs in trio, scheduled by the browser thread
            try:
                send.send_nowait(found)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # stopping: nobody wants finds any more

        def deliver(found: _Found) -> None:  # runs in zeroconf's browser thread
            with suppress(trio.RunFinishedError):  # trio is gone; the browser is stopping
                token.run_sync_soon(put, found)

        zc = await trio.to_thread.run_sync(self._open_zeroconf)
        self._zeroconf = zc
        browser: ServiceBrowser | None = None
        try:
            listener = _Listener(self.service_name, str(self._host.get_id()), deliver)
            browser = ServiceBrowser(zc, SERVICE_TYPE, listener=listener)
            task_status.started()
            # Registering returns once the announcements went out (3 at 225 ms intervals):
            # finds are taken meanwhile.
            async with receive, open_owned_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, self._register, zc, info)
                async for found in receive:
                    self._on_peer(found.peer, found.addrs)
        finally:
            send.close()
            with trio.CancelScope(shield=True):
                if browser is not None:
                    await trio.to_thread.run_sync(browser.cancel)
                await trio.to_thread.run_sync(zc.close)  # sends the goodbye packets
                self._zeroconf = None

    @staticmethod
    def _register(zc: Zeroconf, info: ServiceInfo) -> None:
        zc.register_service(info, cooperating_responders=True)
