"""The libp2p host of a DNDM node: built, run and dialled the way DNDM needs it.

* **Security**: Noise only on TCP, so a peer offering only plaintext, secio or TLS cannot
  connect (py-libp2p's defaults also offer plaintext and secio: a silent downgrade).  QUIC
  connections, when enabled, are secured by QUIC's built-in TLS 1.3 handshake with the libp2p
  certificate extension, as the libp2p QUIC spec requires; there is nothing to negotiate there.
* **Muxer**: yamux only (``/yamux/1.0.0``) on TCP; QUIC multiplexes natively.
* **Connections**: at most one per peer (``max_connections_per_peer=1``, which also removes
  py-libp2p's 250 ms happy-eyeballs wait from every connect); the auto-connector is stopped as
  soon as the host runs, so the host dials only the peers it is told to dial.
* Noise sessions write each message whole: a cancelled stream read or write never breaks the
  connection (:class:`~protocols.libp2p_fixes.noise.WholeWriteNoise`).
* Metrics (whose undrained channel deadlocks the host), mDNS, UPnP and bootstrap are off.

``running_host`` closes the host completely on exit, listeners included, and leaves no task
behind; an exception raised in its body comes out as itself, not wrapped in exception groups
(see :mod:`protocols.libp2p_fixes.host`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as _new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError, MultiError
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.quic.connection import QUICConnection
from multiaddr import Multiaddr
from multiaddr.exceptions import Error as MultiaddrError

from dndm_p2p.errors import ConfigError, DndmError, Unavailable
from dndm_p2p.host.admission import InboundAdmission
from dndm_p2p.host.limits import ConnectionLimits
from protocols.libp2p_fixes.host import (
    check_listen_addrs_free,
    clear_dial_backoff,
    close_host,
    forget_peer_addrs,
    keep_new_connections_on_close_peer,
    release_inbound_slots,
    require_listeners,
    size_resource_manager,
    track_listeners,
    unwrap_host_run_exception,
)
from protocols.libp2p_fixes.noise import DEFAULT_STALL_TIMEOUT, WholeWriteNoise
from protocols.libp2p_fixes.peerstore import (
    DEFAULT_MAX_PEERS,
    BoundedPeerStore,
    HandlerFailures,
    guard_stream_handlers,
    handler_failures_of,
)
from protocols.libp2p_fixes.yamux import windowed_yamux
from protocols.validation import (
    bound_problem,
    check_count,
    check_flag,
    check_instance,
    check_seconds,
    invalid,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "ConnectionLimits",
    "DEFAULT_LISTEN_ADDR",
    "NOISE_PROTOCOL_ID",
    "YAMUX_PROTOCOL_ID",
    "ConnectionInfo",
    "HostConfig",
    "admission_of",
    "build_host",
    "connect",
    "connections_to",
    "handler_failures",
    "listen_addrs",
    "peerstore_size",
    "running_host",
    "set_circuit_dialer",
]

#: Where a host listens unless told otherwise: loopback, a port chosen by the OS.
DEFAULT_LISTEN_ADDR = "/ip4/127.0.0.1/tcp/0"

#: How long :func:`connect` waits by default, in seconds.
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class HostConfig:
    """How to build and run a host.  Every field is checked on construction (:class:`ConfigError`).

    :param listen: multiaddrs to listen on, as strings: ``/ip4|ip6/<ip>/tcp/<port>`` or
        ``/ip4|ip6/<ip>/udp/<port>/quic-v1`` (port 0: any free port).  At least one.
    :param quic: also listen on, and dial, QUIC v1: for every TCP listen address without a QUIC
        address on the same IP, ``/ip4|ip6/<same ip>/udp/<same port>/quic-v1`` is added.
        QUIC listen addresses are only allowed with ``quic=True``.
    :param max_connections: most connections the host keeps open, inbound and outbound;
        beyond it, inbound connections are refused and dials fail.
    :param negotiate_timeout: seconds allowed for each connection upgrade (security and muxer
        handshakes) and each stream's protocol negotiation.  At least 1: py-libp2p applies the
        stream-negotiation timeout in whole seconds.
    :param dial_retries: how often a failed dial to one address is retried (with py-libp2p's
        exponential back-off from 0.1 s) inside one :func:`connect`.  0 by default: a
        :func:`connect` fails fast and the caller decides when to try again.
    :param close_timeout: seconds allowed for closing the host on exit from
        :func:`running_host`; what is still open then is cancelled.
    :param write_stall_timeout: seconds an encrypted message may take to leave once its write
        has begun (it is never cut by a cancellation); a connection whose peer does not read
        for that long is closed.
    :param limits: which inbound connections are admitted: per IP, per subnet, pending
        handshakes, peers that do not speak DNDM (see :class:`ConnectionLimits`).
    :param max_peers: most peers the host's peer store remembers (addresses, keys,
        protocols); beyond it the least recently seen disconnected peers are forgotten.  The
        host's own entry and connected peers are never forgotten.
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN_ADDR,)
    quic: bool = False
    max_connections: int = 300
    negotiate_timeout: float = 10.0
    dial_retries: int = 0
    close_timeout: float = 5.0
    write_stall_timeout: float = DEFAULT_STALL_TIMEOUT
    max_peers: int = DEFAULT_MAX_PEERS
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        addrs: object = self.listen
        if isinstance(addrs, str | Multiaddr) or not isinstance(addrs, tuple | list):
            raise invalid(
                self, "listen", f"must be a tuple of multiaddr strings, not {type(addrs).__name__}"
            )
        normalized = tuple(str(addr) for addr in addrs)
        object.__setattr__(self, "listen", normalized)
        if not normalized:
            raise invalid(self, "listen", "is empty: a host needs at least one listen address")
        kinds = [_listen_kind(addr) for addr in normalized]  # checks each address
        canonical = [str(Multiaddr(addr)) for addr in normalized]
        for addr in canonical:
            if canonical.count(addr) > 1:
                raise invalid(self, "listen", f"address {addr} is listed more than once")
        check_flag(self, "quic")
        for addr, kind in zip(normalized, kinds, strict=True):
            if kind == "quic" and not self.quic:
                raise invalid(
                    self,
                    "listen",
                    f"address {addr} is a QUIC address, but quic=False; set quic=True to use QUIC",
                )
        check_count(self, "max_connections", at_least=1)
        check_count(self, "dial_retries", at_least=0)
        check_seconds(self, "negotiate_timeout", at_least=1)
        check_seconds(self, "close_timeout", above=0)
        check_seconds(self, "write_stall_timeout", at_least=1)
        check_count(self, "max_peers", at_least=16)
        check_instance(self, "limits", ConnectionLimits)

    def listen_multiaddrs(self) -> list[Multiaddr]:
        """The addresses the host listens on: ``listen``, plus the QUIC ones ``quic`` adds."""
        addrs = [Multiaddr(addr) for addr in self.listen]
        if self.quic:
            quic_ips = {_ip_of(addr) for addr in addrs if _listen_kind(str(addr)) == "quic"}
            for addr in list(addrs):
                if _listen_kind(str(addr)) == "tcp" and _ip_of(addr) not in quic_ips:
                    ip_proto, ip = _ip_of(addr)
                    port = addr.value_for_protocol("tcp")
                    addrs.append(Multiaddr(f"/{ip_proto}/{ip}/udp/{port}/quic-v1"))
                    quic_ips.add((ip_proto, ip))
        return addrs


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What one open connection to a peer is made of."""

    peer_id: ID
    #: ``"tcp"`` or ``"quic-v1"``.
    transport: str
    #: ``"/noise"`` on TCP; None on QUIC, whose TLS 1.3 handshake is built in.
    security: str | None
    #: ``"/yamux/1.0.0"`` on TCP; None on QUIC, which multiplexes natively.
    muxer: str | None
    #: ``"inbound"`` (the peer dialled us), ``"outbound"`` or ``"unknown"``.
    direction: str
    #: The peer's end of the connection.
    remote_addrs: tuple[Multiaddr, ...]


def build_host(key_pair: KeyPair, config: HostConfig | None = None) -> IHost:
    """Build (but do not start) a libp2p host with ``key_pair``'s identity; see the module doc.

    :raises ConfigError: ``key_pair`` is not an Ed25519 key pair.
    """
    config = config if config is not None else HostConfig()
    if not isinstance(key_pair.private_key, Ed25519PrivateKey):
        raise ConfigError(
            f"a host's identity must be an Ed25519 key, not {key_pair.private_key.get_type().name}"
        )
    timeout = config.negotiate_timeout
    connection_config = ConnectionConfig(
        max_connections=config.max_connections,
        # The auto-connector is stopped; with min_connections=0 every slot is open to inbound
        # connections (py-libp2p caps inbound ones at max_connections - min_connections).
        min_connections=0,
        low_watermark=0,
        high_watermark=config.max_connections,
        max_connections_per_peer=1,
        inbound_upgrade_timeout=timeout,
        outbound_upgrade_timeout=timeout,
        inbound_stream_protocol_negotiation_timeout=timeout,
        outbound_stream_protocol_negotiation_timeout=timeout,
    )
    peerstore = BoundedPeerStore(max_peers=config.max_peers)
    noise = WholeWriteNoise(
        key_pair,
        _new_x25519_key_pair().private_key,
        stall_timeout=config.write_stall_timeout,
    )
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=config.listen_multiaddrs(),  # picks the transports: TCP, and QUIC if asked
        enable_quic=config.quic,
        enable_mDNS=False,
        enable_upnp=False,
        enable_metrics=False,
        bootstrap=None,
        peerstore_opt=peerstore,
        negotiate_timeout=math.ceil(timeout),
        connection_config=connection_config,
    )
    network = host.get_network()
    if isinstance(network, Swarm):  # new_host() has no retry_config parameter
        network.retry_config = RetryConfig(max_retries=config.dial_retries)
    peerstore.attach(host)
    guard_stream_handlers(host)
    track_listeners(host)
    admission = InboundAdmission.for_host(host, config.limits, config.max_connections)
    _admissions[host] = admission
    release_inbound_slots(host, admission.admit, handshake_slots=config.limits.max_pending)
    keep_new_connections_on_close_peer(host)
    size_resource_manager(host, config.max_connections)
    windowed_yamux(host)
    return host


@asynccontextmanager
async def running_host(key_pair: KeyPair, config: HostConfig | None = None) -> AsyncIterator[IHost]:
    """Build a host, listen, and yield it; on exit close everything it opened.

    Inside the block the host listens on ``config``'s addresses (see :func:`listen_addrs`) and
    its auto-connector is stopped.  On exit, however the block ends, the host's connections,
    streams, listeners and tasks are closed within ``config.close_timeout``, and an exception
    from the block is re-raised as itself.

    :raises ConfigError: bad key pair (see :func:`build_host`), or a listen address cannot be
        bound: its port is in use (also by another libp2p host, which py-libp2p alone would
        let share it), or it is not an address of this machine.
    """
    config = config if config is not None else HostConfig()
    host = build_host(key_pair, config)
    addrs = config.listen_multiaddrs()
    check_listen_addrs_free(addrs)
    raised: BaseException | None = None
    try:
        async with host.run(addrs):
            try:
                require_listeners(host, addrs)
                await _stop_auto_connector(host)
                yield host
            except BaseException as exc:
                raised = exc
                raise
            finally:
                await close_host(host, grace=config.close_timeout)
    except BaseExceptionGroup as group:
        replacement = unwrap_host_run_exception(group, raised)
        if replacement is group:
            raise
    else:
        return
    raise replacement  # outside the except block, so the group does not become its context


async def connect(
    host: IHost,
    addr: str | Multiaddr,
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,  # noqa: ASYNC109 (the dial's own bound, by design)
) -> ID:
    """Connect ``host`` to the peer at ``addr`` (``/ip4/…/tcp/N/p2p/<peer id>``); return its id.

    Returns at once if a connection to that peer is already open.  Otherwise ``addr`` is the
    address dialled (py-libp2p alone would dial an older address of the peer it knows instead),
    even if the peer failed recently (py-libp2p alone would refuse to dial it for 60 s).
    A relayed address (``…/p2p/<relay>/p2p-circuit/p2p/<peer id>``) is dialled through the
    relay by the dialer :func:`set_circuit_dialer` registered (the NAT component's).

    :raises ConfigError: ``addr`` is not a valid multiaddr, has no ``/p2p/<peer id>`` at its end
        or no transport address before it, names ``host`` itself, or is relayed and ``host``
        has no circuit dialer.
    :raises Unavailable: the connection could not be made within ``timeout`` seconds (refused,
        unreachable, the security handshake failed, the peer is not who ``/p2p/`` says...).
    """
    maddr = _parse_peer_addr(addr)
    peer_info = info_from_p2p_addr(maddr)
    peer_id = peer_info.peer_id
    if peer_id == host.get_id():
        raise ConfigError(f"{maddr} is this host's own address; a host cannot connect to itself")
    problem = bound_problem(timeout, "a number of seconds", above=0)
    if problem is not None:
        raise ConfigError(f"timeout {problem}")
    connected = bool(host.get_network().get_connections(peer_id))
    if not connected and "p2p-circuit" not in _protocol_names(maddr):
        # Dial this address, now: not an older address of the peer, not "failed recently".
        clear_dial_backoff(host, peer_id)
        forget_peer_addrs(host, peer_id)
    try:
        with trio.move_on_after(timeout) as deadline:
            if "p2p-circuit" in _protocol_names(maddr):
                if not connected:
                    await _dial_circuit(host, maddr)
            else:
                await host.connect(peer_info)
    except DndmError:
        raise  # the circuit dialer's own errors (Unavailable is also an OSError)
    except (BaseLibp2pError, OSError) as exc:
        raise Unavailable(
            f"cannot connect to {maddr}: {_failure_reason(exc)}", peer=str(peer_id)
        ) from exc
    if deadline.cancelled_caught:
        raise Unavailable(
            f"cannot connect to {maddr}: no connection within {timeout:g} s", peer=str(peer_id)
        )
    return peer_id


_admissions: weakref.WeakKeyDictionary[IHost, InboundAdmission] = weakref.WeakKeyDictionary()


def admission_of(host: IHost) -> InboundAdmission | None:
    """The inbound admission of a host :func:`build_host` built (None for other hosts)."""
    return _admissions.get(host)


def handler_failures(host: IHost) -> HandlerFailures:
    """How many of ``host``'s protocol handlers raised (each time the stream was reset and the
    host went on), and the last such failure; all zero for a host :func:`build_host` did not
    build (its handlers are not guarded)."""
    return handler_failures_of(host) or HandlerFailures()


def peerstore_size(host: IHost) -> int:
    """How many peers ``host``'s peer store holds now."""
    return len(host.get_peerstore().peer_ids())


def listen_addrs(host: IHost) -> list[Multiaddr]:
    """The addresses ``host`` listens on, each ending in ``/p2p/<its peer id>``: dialable ones.

    Unlike ``host.get_addrs()`` these are only the actual listen sockets (with the real port
    when 0 was asked), not addresses that peers reported observing.  TCP addresses come first,
    then QUIC ones (py-libp2p starts listeners concurrently, so its own order varies).
    """
    suffix = Multiaddr(f"/p2p/{host.get_id()}")
    addrs = [addr.encapsulate(suffix) for addr in host.get_transport_addrs()]
    return sorted(addrs, key=lambda addr: ("quic-v1" in _protocol_names(addr), str(addr)))


def connections_to(host: IHost, peer_id: ID) -> list[ConnectionInfo]:
    """The open connections from ``host`` to ``peer_id`` (at most one, as hosts are built here)."""
    found: list[ConnectionInfo] = []
    for conn in host.get_network().get_connections(peer_id):
        if not isinstance(conn, SwarmConn) or conn.is_closed:
            continue
        found.append(
            ConnectionInfo(
                peer_id=peer_id,
                transport=_transport_of(conn),
                security=conn.get_negotiated_security_protocol(),
                muxer=conn.get_negotiated_muxer_protocol(),
                direction=conn.direction.name.lower(),
                remote_addrs=tuple(conn.get_transport_addresses()),
            )
        )
    return found


def _transport_of(conn: SwarmConn) -> str:
    """``"quic-v1"`` or ``"tcp"`` (py-libp2p's own guess says ``"udp"`` for inbound QUIC)."""
    if isinstance(conn.muxed_conn, QUICConnection):
        return "quic-v1"
    return conn.get_transport_family()


async def _stop_auto_connector(host: IHost) -> None:
    """Stop py-libp2p's auto-connector, which dials every peer in the peerstore (notes §9.11).

    ``ConnectionConfig(min_connections=0, low_watermark=0)`` does not disable it; stopping it
    after ``run()`` has started it does.
    """
    network = host.get_network()
    if isinstance(network, Swarm):
        await network.auto_connector.stop()


def _parse_peer_addr(addr: str | Multiaddr) -> Multiaddr:
    """Parse a peer's dial address; it must be ``<transport address>/p2p/<peer id>``."""
    if isinstance(addr, Multiaddr):
        maddr = addr
    elif isinstance(addr, str):
        try:
            maddr = Multiaddr(addr)
        except (MultiaddrError, ValueError) as exc:
            raise ConfigError(f"{addr!r} is not a valid multiaddr: {exc}") from exc
    else:
        raise ConfigError(f"a peer address is a multiaddr or a string, not {type(addr).__name__}")
    names = _protocol_names(maddr)
    if not names or names[-1] != "p2p":
        raise ConfigError(
            f"{maddr} does not end in /p2p/<peer id>; a peer's address must name the peer "
            "(the addresses from listen_addrs() do)"
        )
    if len(names) == 1:
        raise ConfigError(f"{maddr} names a peer but no address to reach it at")
    return maddr


# -- relayed addresses (NAT traversal, see nat/) ---------------------------------------------------
#: How a host dials ``…/p2p-circuit/p2p/<peer>`` addresses: py-libp2p's swarm cannot (its circuit
#: transport is not registered with it), so the NAT component registers its relay client here.
CircuitDialer = Callable[[Multiaddr], Awaitable[object]]
_circuit_dialers: weakref.WeakKeyDictionary[IHost, CircuitDialer] = weakref.WeakKeyDictionary()


def set_circuit_dialer(host: IHost, dialer: CircuitDialer | None) -> None:
    """Let :func:`connect` dial relayed addresses of ``host`` with ``dialer`` (None: stop)."""
    if dialer is None:
        _circuit_dialers.pop(host, None)
    else:
        _circuit_dialers[host] = dialer


async def _dial_circuit(host: IHost, maddr: Multiaddr) -> None:
    dialer = _circuit_dialers.get(host)
    if dialer is None:
        raise ConfigError(
            f"{maddr} is a relayed address, and this node does not use relays "
            "(enable NAT traversal: NodeConfig.nat)"
        )
    await dialer(maddr)


# -- end of relayed addresses ---------------------------------------------------------------------


def _failure_reason(exc: BaseException) -> str:
    """Say briefly why a dial failed, from the innermost errors of py-libp2p's error chain."""
    leaves = list(_innermost(exc, set()))
    if any(isinstance(leaf, ConnectionRefusedError) for leaf in leaves):
        return "connection refused (nothing listens there)"
    messages: list[str] = []
    for leaf in leaves:
        text = str(leaf).strip() or type(leaf).__name__
        if text not in messages:
            messages.append(text)
    return "; ".join(messages) or type(exc).__name__


def _innermost(exc: BaseException, seen: set[int]) -> Iterator[BaseException]:
    """The errors at the bottom of ``exc``'s causes, groups and py-libp2p ``MultiError``\\ s."""
    if id(exc) in seen:
        return
    seen.add(id(exc))
    inner: list[BaseException] = []
    if isinstance(exc, BaseExceptionGroup):
        inner.extend(exc.exceptions)
    if isinstance(exc, MultiError):
        inner.extend(error for error in exc.errors if isinstance(error, BaseException))
    if exc.__cause__ is not None:
        inner.append(exc.__cause__)
    elif exc.__context__ is not None and not exc.__suppress_context__:
        inner.append(exc.__context__)
    if not inner:
        yield exc
    for sub in inner:
        yield from _innermost(sub, seen)


def _listen_kind(addr: str) -> str:
    """``"tcp"`` or ``"quic"`` for a supported listen address; ConfigError for anything else."""
    try:
        maddr = Multiaddr(addr)
    except (MultiaddrError, ValueError) as exc:
        raise ConfigError(f"listen address {addr!r} is not a valid multiaddr: {exc}") from exc
    names = _protocol_names(maddr)
    if names in (["ip4", "tcp"], ["ip6", "tcp"]):
        return "tcp"
    if names in (["ip4", "udp", "quic-v1"], ["ip6", "udp", "quic-v1"]):
        return "quic"
    raise ConfigError(
        f"listen address {addr!r} is not supported: use /ip4|ip6/<ip>/tcp/<port> or "
        "/ip4|ip6/<ip>/udp/<port>/quic-v1"
    )


def _protocol_names(addr: Multiaddr) -> list[str]:
    """The protocol names of ``addr``, in order: ``["ip4", "tcp", "p2p"]``."""
    return [proto.name for proto in addr.protocols()]


def _ip_of(addr: Multiaddr) -> tuple[str, str]:
    """``("ip4", "127.0.0.1")`` for an IP-based multiaddr."""
    proto = next(iter(addr.protocols())).name
    return proto, str(addr.value_for_protocol(proto))
