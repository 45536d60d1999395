"""Fixes for py-libp2p's host and swarm: closing, listeners, dial backoff, peerstore addresses,
inbound connections and the resource manager.

Every function acts on the one host (or its swarm or transports) it is given; nothing is
changed process-wide.  The defects are listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio
from libp2p.abc import IHost, IListener, IMuxedConn
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.rcmgr import new_resource_manager
from libp2p.rcmgr.connection_limits import ConnectionLimits, new_connection_limits_with_defaults
from multiaddr import Multiaddr

from protocols.errors import ConfigError

__all__ = [
    "check_listen_addrs_free",
    "clear_dial_backoff",
    "close_host",
    "close_orphan_listeners",
    "InboundAdmit",
    "InboundTicket",
    "forget_peer_addrs",
    "keep_new_connections_on_close_peer",
    "release_inbound_slots",
    "require_listeners",
    "size_resource_manager",
    "track_listeners",
    "unwrap_host_run_exception",
]

logger = logging.getLogger(__name__)


async def close_host(host: IHost, *, grace: float) -> bool:
    """Close ``host`` (connections, listeners, transports), shielded, within ``grace`` seconds.

    Call it inside ``async with host.run(...)``, just before leaving the block.

    Listeners :func:`track_listeners` found orphaned are closed too.

    :returns: True if the host closed within ``grace`` seconds; False if it was abandoned (a
        warning is logged; whatever is left is then cancelled by the exit from ``run()``).
    """
    with trio.CancelScope(shield=True), trio.move_on_after(grace) as deadline:
        await close_orphan_listeners(host)
        await host.close()
    if deadline.cancelled_caught:
        logger.warning("libp2p host %s did not close within %g s", host.get_id(), grace)
        return False
    return True


def unwrap_host_run_exception(
    group: BaseExceptionGroup[BaseException], raised: BaseException | None
) -> BaseException:
    """Return the exception to raise in place of ``group``, which left ``async with host.run()``.

    ``raised`` is the exception the body of the ``async with`` block raised (None if it
    finished normally).  If every exception in ``group`` is ``raised`` itself or a
    ``trio.Cancelled``, this returns ``raised``; otherwise the group itself, unchanged, so an
    error of py-libp2p's own is never hidden.
    """
    if raised is None:
        return group
    leaves = list(_leaves(group, raised))
    if any(leaf is raised for leaf in leaves) and all(
        leaf is raised or isinstance(leaf, trio.Cancelled) for leaf in leaves
    ):
        return raised
    return group


def _leaves(exc: BaseException, stop: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``'s (nested) groups; ``stop`` is not looked into."""
    if exc is stop or not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for sub in exc.exceptions for leaf in _leaves(sub, stop)]


def clear_dial_backoff(host: IHost, peer_id: ID) -> None:
    """Clear ``host``'s dial backoff ("negative cache") entry of ``peer_id``, so the next dial
    really dials."""
    cache = getattr(host.get_network(), "_negative_peer_cache", None)
    evict = getattr(cache, "evict", None)
    if callable(evict):
        evict(str(peer_id))


def forget_peer_addrs(host: IHost, peer_id: ID) -> None:
    """Drop every address ``host``'s peerstore has for ``peer_id``, so that a dial that follows
    uses only the addresses it is given (identify records the current ones once connected)."""
    host.get_peerstore().clear_addrs(peer_id)


def check_listen_addrs_free(addrs: Sequence[Multiaddr]) -> None:
    """Check that each TCP or UDP (QUIC) listen address can be bound, before a host uses it.

    Each address is bound, then released, by a plain socket (for TCP with ``SO_REUSEADDR``, as
    any server has, so connections lingering in TIME_WAIT do not count as a conflict).

    :raises ConfigError: an address cannot be bound (in use, or not an address of this
        machine), with the system's reason.
    """
    for addr in addrs:
        names = [proto.name for proto in addr.protocols()]
        if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] not in ("tcp", "udp"):
            continue
        family = socket.AF_INET if names[0] == "ip4" else socket.AF_INET6
        kind = socket.SOCK_STREAM if names[1] == "tcp" else socket.SOCK_DGRAM
        ip = str(addr.value_for_protocol(names[0]))
        port = int(str(addr.value_for_protocol(names[1])))
        try:
            with socket.socket(family, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((ip, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"cannot listen on {addr}: {reason}") from exc


def require_listeners(host: IHost, addrs: Sequence[Multiaddr]) -> None:
    """Check that ``host`` (running) has a listener for each address it was told to listen on.

    Call it once ``host.run(addrs)`` has returned control.

    :raises ConfigError: naming the addresses the host does not listen on.
    """
    listening = set(host.get_network().listeners)
    missing = [str(addr) for addr in addrs if str(addr) not in listening]
    if missing:
        raise ConfigError(
            f"the host could not listen on {', '.join(missing)} (is the address in use, or "
            "not an address of this machine?)"
        )


_LISTENERS: weakref.WeakKeyDictionary[IHost, list[IListener]] = weakref.WeakKeyDictionary()


def track_listeners(host: IHost) -> None:
    """Remember every listener ``host``'s transports create, for :func:`close_orphan_listeners`.

    Call it once, on a host that has not run yet.  Wraps ``create_listener`` on this host's
    transport objects only.
    """
    created: list[IListener] = []
    _LISTENERS[host] = created
    manager = getattr(host.get_network(), "transport_manager", None)
    for transport in manager.get_transports() if manager is not None else ():
        original: Callable[..., IListener] = transport.create_listener

        def create_listener(
            *args: object, _original: Callable[..., IListener] = original
        ) -> IListener:
            listener = _original(*args)
            created.append(listener)
            return listener

        setattr(transport, "create_listener", create_listener)  # noqa: B010 (shadow the method)


async def close_orphan_listeners(host: IHost) -> None:
    """Close the listeners :func:`track_listeners` saw ``host`` create that it does not use.

    Call it before the host is closed (``host.close()`` forgets its own listeners).
    """
    in_use = {id(listener) for listener in host.get_network().listeners.values()}
    for listener in _LISTENERS.get(host, []):
        if id(listener) not in in_use:
            try:
                await listener.close()
            except Exception:
                logger.debug("closing an orphaned listener failed", exc_info=True)


class InboundTicket(Protocol):
    """One admitted inbound connection, as :func:`release_inbound_slots` reports it."""

    def established(self, peer_id: ID) -> None:
        """The connection's upgrade succeeded: it is ``peer_id``'s."""

    def release(self) -> None:
        """The connection ended (or its upgrade failed); called exactly once."""


#: Decide on one inbound connection, given its remote address (None when unknown), before
#: its upgrade: a ticket admits it, None refuses it (the socket is closed at once).
InboundAdmit = Callable[[Multiaddr | None], Awaitable[InboundTicket | None]]


def release_inbound_slots(
    host: IHost, admit: InboundAdmit | None = None, *, handshake_slots: int = 0
) -> None:
    """Let each inbound connection give back its inbound slot (and task) when it closes.

    The replacement, installed on this host's swarm only, does the same work but waits for
    *that* connection to close.  Pre-multiplexed connections (QUIC) keep the original path.
    With ``admit``, every inbound TCP connection is first put to it: refused connections are
    closed before any handshake; an admitted one's ticket hears when it is established and
    is released exactly once, when it ends.  ``handshake_slots`` more inbound connections
    than py-libp2p's cap (``max_connections``) may then be in their handshakes at once, so
    that ``admit`` sees them and can make room (the established connections stay capped).
    """
    swarm: Any = host.get_network()
    original = swarm._do_handle_inbound_connection
    limiter = getattr(swarm, "_inbound_limiter", None)
    if handshake_slots > 0 and isinstance(limiter, trio.CapacityLimiter):
        limiter.total_tokens = limiter.total_tokens + handshake_slots

    async def handle(read_write_closer: Any, maddr: Multiaddr, failure_event: Any) -> None:
        if isinstance(read_write_closer, IMuxedConn):
            await original(read_write_closer, maddr, failure_event)
            return
        remote = swarm._build_remote_multiaddr(read_write_closer)
        ticket = await admit(remote) if admit is not None else None
        if (admit is not None and ticket is None) or (
            remote is not None and not await swarm.connection_gate.is_allowed(remote)
        ):
            if ticket is not None:
                ticket.release()
            with contextlib.suppress(Exception):
                await read_write_closer.close()
            return
        try:
            await _upgrade_and_wait(swarm, read_write_closer, maddr, remote, ticket)
        finally:
            if ticket is not None:
                ticket.release()

    swarm._do_handle_inbound_connection = handle


async def _upgrade_and_wait(
    swarm: Any,
    read_write_closer: Any,
    maddr: Multiaddr,
    remote: Multiaddr | None,
    ticket: InboundTicket | None,
) -> None:
    raw_conn = RawConnection(read_write_closer, False)
    try:
        muxed = await swarm.upgrade_inbound_raw_conn(raw_conn, maddr)
    except Exception as exc:
        logger.debug("inbound upgrade from %s failed: %s", remote, exc)
        with contextlib.suppress(Exception):
            await raw_conn.close()
        return
    if ticket is not None:
        ticket.established(muxed.peer_id)
    for conn in swarm.get_connections(muxed.peer_id):
        if conn.muxed_conn is muxed:
            await _wait_closed_or_orphaned(swarm, conn)
            return


#: Seconds between checks that a waited-on inbound connection is still the swarm's.
_ORPHAN_CHECK = 1.0


async def _wait_closed_or_orphaned(swarm: Any, conn: Any) -> None:
    """Wait until ``conn`` closes; a connection the swarm no longer lists (it can drop one
    from its table without closing it while the peer reconnects) is closed here."""
    peer_id = conn.muxed_conn.peer_id
    while not conn.event_closed.is_set():
        with trio.move_on_after(_ORPHAN_CHECK):
            await conn.event_closed.wait()
        if not conn.event_closed.is_set() and conn not in swarm.get_connections(peer_id):
            logger.debug("closing an inbound connection of %s the swarm forgot", peer_id)
            with contextlib.suppress(Exception):
                await conn.close()
            return


def keep_new_connections_on_close_peer(host: IHost) -> None:
    """Stop ``close_peer`` from forgetting a connection that arrived while it was closing.

    The wrapper, installed on this host's swarm only, puts such connections back.
    """
    swarm: Any = host.get_network()
    original = swarm.close_peer

    async def close_peer(peer_id: ID) -> None:
        entry = swarm.connections.get(peer_id)
        before = set(map(id, entry)) if entry is not None else set()
        await original(peer_id)
        if entry is None:
            return
        arrived = [c for c in entry if id(c) not in before and not c.is_closed]
        if arrived:
            swarm.connections.setdefault(peer_id, []).extend(
                c for c in arrived if c not in swarm.connections.get(peer_id, [])
            )

    swarm.close_peer = close_peer


def size_resource_manager(host: IHost, max_connections: int) -> None:
    """Let ``host`` hold ``max_connections`` connections when that is above py-libp2p's caps.

    When ``max_connections`` exceeds the default resource manager's 256 established inbound
    connections, the host's swarm gets a resource manager whose connection limits (pending,
    established, total) are ``max_connections``; its other limits stay py-libp2p's.
    """
    default = new_connection_limits_with_defaults()
    if max_connections <= (default.max_established_inbound or 0):
        return
    swarm = host.get_network()
    if isinstance(swarm, Swarm):
        limits = ConnectionLimits(
            max_pending_inbound=max_connections,
            max_pending_outbound=max_connections,
            max_established_inbound=max_connections,
            max_established_outbound=max_connections,
            max_established_per_peer=default.max_established_per_peer,
            max_established_total=max_connections,
        )
        swarm.set_resource_manager(new_resource_manager(connection_limits=limits))
