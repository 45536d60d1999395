"""Workarounds for bugs in py-libp2p 0.8.1, kept in one place so they can be dropped one by one.

Each function's docstring names the bug it works around; ``tests/host/test_libp2p_fixes.py`` has,
for
each one, a test that shows what py-libp2p does *without* the workaround.  When a py-libp2p
upgrade fixes a bug, that test fails: delete the test and the workaround together.

* :func:`encode_ed25519_private_key` / :func:`decode_ed25519_private_key`: py-libp2p writes (and
  reads only) a 32-byte Ed25519 private key, where go-, rust- and js-libp2p use 64 bytes.
* :func:`close_host`: leaving ``BasicHost.run()`` leaves the listening sockets open.
* :func:`unwrap_host_run_exception`: an exception raised inside ``async with host.run()`` comes
  out wrapped in nested ``ExceptionGroup``\\ s.
* :func:`clear_dial_backoff`: one failed dial blocks every dial to that peer for 60 seconds.
* :func:`forget_peer_addrs`: a stale address of a peer hides a new one from the dialler.
* :func:`check_listen_addrs_free`: a second host can listen on a port that is already taken,
  and the two then share its connections.
* :func:`require_listeners`: a host whose listen address cannot be bound runs anyway, deaf.
* :func:`track_listeners` / :func:`close_orphan_listeners`: the listener of an address that
  failed to bind is dropped without being closed, and its task runs forever.
* :func:`keep_new_connections_on_close_peer`: ``close_peer`` forgets a connection to the
  same peer that was established while it was closing the old ones.
* :func:`release_inbound_slots`: every inbound connection holds an inbound slot and a task
  until the whole swarm stops, so a long-running host ends up refusing all connections.
* :func:`size_resource_manager`: the default resource manager admits 256 inbound connections
  whatever the connection manager allows.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.abc import IHost, IListener, IMuxedConn
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.pb import crypto_pb2
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.rcmgr import new_resource_manager
from libp2p.rcmgr.connection_limits import ConnectionLimits, new_connection_limits_with_defaults
from multiaddr import Multiaddr

from dndm_p2p.errors import ConfigError

__all__ = [
    "check_listen_addrs_free",
    "clear_dial_backoff",
    "close_host",
    "close_orphan_listeners",
    "decode_ed25519_private_key",
    "encode_ed25519_private_key",
    "forget_peer_addrs",
    "keep_new_connections_on_close_peer",
    "release_inbound_slots",
    "require_listeners",
    "size_resource_manager",
    "track_listeners",
    "unwrap_host_run_exception",
]

logger = logging.getLogger(__name__)

_SEED_SIZE = 32
_PUBLIC_KEY_SIZE = 32


def encode_ed25519_private_key(private_key: Ed25519PrivateKey) -> bytes:
    """Serialize an Ed25519 private key as the libp2p ``PrivateKey`` protobuf, as go-libp2p does.

    py-libp2p bug: ``Ed25519PrivateKey.serialize()`` puts only the 32-byte seed in the protobuf's
    ``Data`` field.  go-libp2p, rust-libp2p and js-libp2p write the 64-byte ``seed || public
    key`` form there, and go-libp2p's ``UnmarshalEd25519PrivateKey`` rejects anything but 64 or
    96 bytes, so a key file written by py-libp2p cannot be loaded by go-libp2p (or Kubo).  This
    writes the 64-byte form.
    """
    seed = private_key.to_bytes()
    public = private_key.get_public_key().to_bytes()
    message = crypto_pb2.PrivateKey(key_type=crypto_pb2.KeyType.Ed25519, data=seed + public)
    return message.SerializeToString()


def decode_ed25519_private_key(data: bytes) -> Ed25519PrivateKey:
    """Build an Ed25519 private key from the ``Data`` field of a libp2p ``PrivateKey`` protobuf.

    py-libp2p bug: ``deserialize_private_key`` (and so ``libp2p.identity_utils.load_identity``
    and ``FileSystemKeyStore``) accepts only the 32-byte seed that py-libp2p itself writes; the
    64-byte ``seed || public key`` form written by go-, rust- and js-libp2p fails with
    ``The seed must be exactly 32 bytes long``.  This accepts the two forms go-libp2p accepts,
    64 bytes (the standard form) and 96 bytes (an old go-libp2p form with the public key
    repeated), and py-libp2p's 32 bytes.  Where the public key is present it must match the
    seed.

    :raises ValueError: the data has another length, or its public key does not match the seed.
    """
    size = len(data)
    if size not in (_SEED_SIZE, _SEED_SIZE + _PUBLIC_KEY_SIZE, _SEED_SIZE + 2 * _PUBLIC_KEY_SIZE):
        raise ValueError(f"an Ed25519 private key has 32, 64 or 96 bytes of data, not {size}")
    key = Ed25519PrivateKey.from_bytes(data[:_SEED_SIZE])
    derived = key.get_public_key().to_bytes()
    for start in range(_SEED_SIZE, size, _PUBLIC_KEY_SIZE):
        if data[start : start + _PUBLIC_KEY_SIZE] != derived:
            raise ValueError("the public key stored with the Ed25519 seed does not match it")
    return key


async def close_host(host: IHost, *, grace: float) -> bool:
    """Close ``host`` (connections, listeners, transports), shielded, within ``grace`` seconds.

    Call it inside ``async with host.run(...)``, just before leaving the block.

    py-libp2p bug: leaving ``BasicHost.run()`` stops the swarm by cancelling it, and
    ``Swarm.run``'s cleanup (its ``finally`` block, which closes connections and listeners)
    then runs inside the cancelled scope without a shield: its first ``await`` raises
    ``Cancelled`` and ``TCPListener.close()`` is abandoned half-way.  The listening sockets stay
    open (a TCP connect to the old port still succeeds) and the listener's system tasks keep
    running after ``run()`` has returned.  ``host.close()`` before the exit closes them properly.

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

    py-libp2p bug: ``BasicHost.run()`` yields inside a trio nursery, nested in the nursery of
    ``background_trio_service``.  With trio's strict exception groups, an exception raised in the
    ``async with host.run()`` body therefore comes out as ``ExceptionGroup(ExceptionGroup(exc))``
    (deeper still when several hosts are nested), so ``except SomeError`` around the block never
    matches.
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
    """Forget that dialling ``peer_id`` failed recently, so the next dial really tries.

    py-libp2p bug: when a dial to a peer fails, ``Swarm`` puts the peer in a "negative cache"
    for 60 seconds, and every ``dial_peer``/``host.connect`` to it in that time fails at once
    with ``SwarmException("... recently failed all addresses (negative cache)")``, without
    touching the network, even after the peer has come up or a new address was given.  There is
    no public API to clear it; an explicit, user-requested connect should always dial.
    """
    cache = getattr(host.get_network(), "_negative_peer_cache", None)
    evict = getattr(cache, "evict", None)
    if callable(evict):
        evict(str(peer_id))


def forget_peer_addrs(host: IHost, peer_id: ID) -> None:
    """Drop every address ``host``'s peerstore has for ``peer_id`` before dialling a given one.

    py-libp2p bug: ``Swarm.dial_peer`` dials at most one address per kind of transport (one TCP
    address, one QUIC address...), the first one the peerstore lists, and ``host.connect(info)``
    only *adds* ``info``'s addresses after those already known.  So once a peer's old TCP
    address is in the peerstore (its addresses are kept for 120 s after a ``connect``, longer
    after identify), connecting to the peer's new TCP address dials the old one and fails, with
    the old address's error.  Forgetting the known addresses makes the dial use the given one;
    identify records the peer's current addresses again once connected.
    """
    host.get_peerstore().clear_addrs(peer_id)


def check_listen_addrs_free(addrs: Sequence[Multiaddr]) -> None:
    """Check that each TCP or UDP (QUIC) listen address can be bound, before a host uses it.

    Each address is bound, then released, by a plain socket (for TCP with ``SO_REUSEADDR``, as
    any server has, so connections lingering in TIME_WAIT do not count as a conflict).

    py-libp2p bug: the TCP and QUIC listeners set ``SO_REUSEPORT`` on their sockets (for TCP
    hole punching).  On Linux that lets a second host of the same user, in this process or
    another, listen on a port another host already listens on: no error, and the kernel then
    shares the incoming connections between the two hosts, so dials to either one fail about
    half of the time (the other host answers, with the wrong peer id).  A plain socket cannot
    bind a port held by a ``SO_REUSEPORT`` socket, so this probe sees the conflict.  (A host
    could still take the port between this check and the listen; the window is short.)

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

    py-libp2p bug: ``Swarm.listen`` catches the ``OSError`` of a listener that fails to bind
    (address in use, address not on this machine), logs it at debug level and returns False,
    and ``BasicHost.run()`` ignores that result: the host runs without listening, and nothing
    says so.

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

    Call it once, on a host that has not run yet.

    py-libp2p bug: when a listener fails to bind, ``Swarm.listen`` removes it from
    ``swarm.listeners`` without closing it.  The TCP listener has already started its
    background system task by then; nothing references the listener any more, so
    ``host.close()`` cannot close it and the task runs until the process ends.
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

    Call it before the host is closed (``host.close()`` forgets its own listeners).  See
    :func:`track_listeners` for the py-libp2p bug.
    """
    in_use = {id(listener) for listener in host.get_network().listeners.values()}
    for listener in _LISTENERS.get(host, []):
        if id(listener) not in in_use:
            try:
                await listener.close()
            except Exception:
                logger.debug("closing an orphaned listener failed", exc_info=True)


def release_inbound_slots(host: IHost) -> None:
    """Let each inbound connection give back its inbound slot (and task) when it closes.

    py-libp2p bug: ``Swarm._do_handle_inbound_connection`` keeps the handler of every accepted
    TCP connection alive with ``await self.manager.wait_finished()``, that is until the whole
    swarm stops, and the handler holds one of the swarm's inbound slots all that time.  A
    closed connection therefore leaves a task behind, and after ``max_connections`` inbound
    connections over the host's lifetime (even with none open) it refuses every new one.

    The replacement, installed on this host's swarm only, does the same work but waits for
    *that* connection to close.  Pre-multiplexed connections (QUIC) keep the original path.
    """
    swarm: Any = host.get_network()
    original = swarm._do_handle_inbound_connection

    async def handle(read_write_closer: Any, maddr: Multiaddr, failure_event: Any) -> None:
        if isinstance(read_write_closer, IMuxedConn):
            await original(read_write_closer, maddr, failure_event)
            return
        remote = swarm._build_remote_multiaddr(read_write_closer)
        if remote is not None and not await swarm.connection_gate.is_allowed(remote):
            with contextlib.suppress(Exception):
                await read_write_closer.close()
            return
        raw_conn = RawConnection(read_write_closer, False)
        try:
            muxed = await swarm.upgrade_inbound_raw_conn(raw_conn, maddr)
        except Exception as exc:
            logger.debug("inbound upgrade from %s failed: %s", remote, exc)
            with contextlib.suppress(Exception):
                await raw_conn.close()
            return
        for conn in swarm.get_connections(muxed.peer_id):
            if conn.muxed_conn is muxed:
                await conn.event_closed.wait()
                return

    swarm._do_handle_inbound_connection = handle


def keep_new_connections_on_close_peer(host: IHost) -> None:
    """Stop ``close_peer`` from forgetting a connection that arrived while it was closing.

    py-libp2p bug: ``Swarm.close_peer`` awaits each connection's close and then pops the peer's
    whole entry from ``swarm.connections``.  A connection to the same peer established in the
    meantime (a reconnection) is dropped from the table although it stays open, so the host no
    longer sees it: ``disconnect`` becomes a no-op and streams are opened on a new connection.

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

    py-libp2p's default resource manager admits at most 256 established inbound connections
    (and 64 pending ones), whatever the connection manager's ``max_connections`` says: a
    bootstrap server allowed 1,000 connections refuses joins from the 257th on (measured in a
    1,000-node simnet run: 3,464 joins refused, discovery at 27 %).  This replaces it with one
    whose connection limits follow ``max_connections`` (other limits stay py-libp2p's).
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
