"""An emulated IP network for many py-libp2p hosts in one trio run: ``SimNetwork`` + its transport.

Each simulated node has one IPv4 address and reaches the others through a py-libp2p transport
(:class:`SimTransport`, an ``ITransport``) whose connections are in-memory byte pipes.  The
normal upgrader runs on top (multistream-select, Noise or plaintext, yamux or mplex), so the
hosts are real py-libp2p hosts.  Meant to run under ``trio.testing.MockClock`` (virtual time).

The model, owned by :class:`SimNetwork`:

* **Latency**: one-way seconds per pair of nodes (a function of the two addresses).
* **Uplink bandwidth** per node (its class): the node's writes are serialised on one uplink.
* **Loss** as retransmission delay: each write is retransmitted a geometric number of times,
  each time after a retransmission timeout that doubles (TCP-like: bytes arrive late, in order).
* **Partitions**: nodes in different groups cannot talk.  Dials between them fail after
  ``dial_fail_delay``; bytes written on an open connection are black-holed while the partition
  lasts and delivered in order after the heal (TCP keeps retransmitting), unless the connection
  was given up on meanwhile.
* **NAT classes** (:class:`Nat`): public nodes accept every dial; a cone-NAT node accepts a
  dial only from an address it has dialled before; a symmetric-NAT node accepts none (it is
  reachable through relays only).  Refused dials fail like partitioned ones, after a delay.
* **Connection limits** per class (:class:`NodeClass`), applied by the hosts built on the node.

Delivery has no forwarding task: each write is stamped with its delivery time,
``max(last stamp, now + size / uplink + latency + loss delay)`` (so delivery is FIFO), and a
read sleeps until the stamp of the data at its head.  A dial costs one round trip (the TCP
handshake).  A close sends an end-of-stream after the data already written; a reset (of a
connection or a crashed node) reaches the other end one latency later and fails its reads and
writes there.

Addresses come from a private range (``10.0.0.0/8`` by default; Kademlia's per-/24 subnet
limit exempts private ranges), ``hosts_per_subnet`` nodes to a /24.  Dialling ports are
counted per address and wrap inside 32768-60999, skipping ports still in use, so no address is
ever an invalid multiaddr however many connections a run makes.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

import trio
from libp2p.abc import IListener, IRawConnection, ITransport
from libp2p.custom_types import THandler
from libp2p.io.abc import ReadWriteCloser
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.transport.exceptions import OpenConnectionError
from multiaddr import Multiaddr

from protocols.errors import ConfigError
from protocols.validation import check_count

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "EPHEMERAL_PORTS",
    "PUBLIC",
    "Counters",
    "LatencyFn",
    "Nat",
    "NodeClass",
    "SimConnection",
    "SimListener",
    "SimNetwork",
    "SimNode",
    "SimStream",
    "SimTransport",
    "constant_latency",
]

logger = logging.getLogger(__name__)

#: The port a node listens on when asked for port 0.
DEFAULT_LISTEN_PORT: Final = 4001
#: Dialling ports (Linux's default ephemeral range).
EPHEMERAL_PORTS: Final = range(32768, 61000)
#: Most retransmissions of one write that the loss model charges.
_MAX_RETRANSMITS: Final = 8

LatencyFn = Callable[[str, str], float]
"""One-way latency in seconds from the first address to the second."""


def constant_latency(seconds: float) -> LatencyFn:
    """A latency function: the same one-way latency between every pair of nodes."""
    if not seconds >= 0:
        raise ConfigError(f"latency must be >= 0 seconds, not {seconds!r}")
    return lambda _a, _b: seconds


class Nat(Enum):
    """How a node is reachable from others."""

    #: Accepts every dial.
    PUBLIC = "public"
    #: Accepts a dial only from an address it has dialled before (an endpoint-independent
    #: mapping, as a full-cone NAT with port-restricted filtering behaves towards peers).
    CONE = "cone"
    #: Accepts no dial at all: reachable through relays only.
    SYMMETRIC = "symmetric"


@dataclass(frozen=True, slots=True)
class NodeClass:
    """A kind of node: reachability, uplink, and the connection limits its hosts get.

    :param name: a label for reports.
    :param nat: see :class:`Nat`.
    :param uplink: bytes per second the node can send (all connections together); ``inf``:
        unlimited.
    :param max_connections: ``ConnectionConfig.max_connections`` of the node's hosts.
    :param min_connections: ``ConnectionConfig.min_connections`` (inbound connections are
        capped at ``max_connections - min_connections``).
    :param low_watermark: ``ConnectionConfig.low_watermark``.
    :param high_watermark: ``ConnectionConfig.high_watermark``; pruning starts above it.
    """

    name: str = "public"
    nat: Nat = Nat.PUBLIC
    uplink: float = math.inf
    max_connections: int = 160
    min_connections: int = 8
    low_watermark: int = 32
    high_watermark: int = 96

    def __post_init__(self) -> None:
        if not isinstance(self.nat, Nat):
            raise ConfigError(f"nat must be a Nat, not {self.nat!r}")
        if not self.uplink > 0:
            raise ConfigError(f"uplink must be > 0 bytes/s, not {self.uplink!r}")
        for name in ("max_connections", "min_connections", "low_watermark", "high_watermark"):
            check_count(self, name, at_least=0)
        if not self.min_connections <= self.max_connections:
            raise ConfigError(f"class {self.name!r}: min_connections > max_connections")
        if not self.low_watermark <= self.high_watermark <= self.max_connections:
            raise ConfigError(
                f"class {self.name!r}: need low_watermark <= high_watermark <= max_connections"
            )


#: A dialable node with unlimited uplink and the limits simnet-notes §2.2 found realistic.
PUBLIC: Final = NodeClass()


@dataclass(slots=True)
class Counters:
    """What one node sent, received and dialled.  Messages are writes (chunks)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    dials_out: int = 0
    dials_in: int = 0
    dials_failed: int = 0


class _Ports:
    """Dialling ports of one address: a counter wrapping in EPHEMERAL_PORTS, skipping busy ones."""

    __slots__ = ("_in_use", "_next")

    def __init__(self, start: int) -> None:
        self._next = start
        self._in_use: set[int] = set()

    def take(self) -> int:
        span = len(EPHEMERAL_PORTS)
        for _ in range(span):
            port = self._next
            self._next = EPHEMERAL_PORTS.start + (port - EPHEMERAL_PORTS.start + 1) % span
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise OpenConnectionError(f"all {span} dialling ports of this address are in use")

    def release(self, port: int) -> None:
        self._in_use.discard(port)


@dataclass(eq=False)
class SimNode:
    """One simulated machine: address, class, counters.  Made by :meth:`SimNetwork.add_node`."""

    ip: str
    node_class: NodeClass
    index: int
    counters: Counters = field(default_factory=Counters)
    #: True while the node is down (crashed): it neither dials nor answers.
    down: bool = False
    _listeners: dict[int, SimListener] = field(default_factory=dict, repr=False)
    _dialled: set[str] = field(default_factory=set, repr=False)
    _ports: _Ports = field(default_factory=lambda: _Ports(EPHEMERAL_PORTS.start), repr=False)
    _uplink_free_at: float = field(default=-math.inf, repr=False)
    _connections: set[SimConnection] = field(default_factory=set, repr=False)

    def listen_addr(self, port: int = DEFAULT_LISTEN_PORT) -> Multiaddr:
        """The TCP multiaddr ``/ip4/<ip>/tcp/<port>`` of this node."""
        return Multiaddr(f"/ip4/{self.ip}/tcp/{port}")

    @property
    def connection_count(self) -> int:
        """Open connections of this node (either end still open)."""
        return len(self._connections)


class _Pipe:
    """One direction of a connection: stamped chunks waiting for their reader."""

    __slots__ = ("dst", "eof_at", "held", "items", "last", "reset_at", "src", "wakeup")

    def __init__(self, src: SimNode, dst: SimNode) -> None:
        self.src = src
        self.dst = dst
        self.items: deque[tuple[float, bytes | None]] = deque()  # None: end of stream
        self.last = -math.inf
        self.held: list[bytes | None] = []  # written across a partition
        self.eof_at: float | None = None
        self.reset_at: float | None = None
        self.wakeup: trio.Event | None = None

    def wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()


class SimStream(ReadWriteCloser):
    """One end of a simulated TCP connection (py-libp2p wraps it in ``RawConnection``)."""

    def __init__(
        self, connection: SimConnection, incoming: _Pipe, outgoing: _Pipe, remote: tuple[str, int]
    ) -> None:
        self._connection = connection
        self._in = incoming
        self._out = outgoing
        self._remote = remote
        self._closed = False
        self._aborted = False

    async def read(self, n: int | None = None) -> bytes:
        """Up to ``n`` bytes (all of the next chunk if None); ``b""`` at end of stream.

        :raises ConnectionClosedError: the connection was reset.
        """
        pipe = self._in
        while True:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return b""
            now = trio.current_time()
            if self._aborted or (pipe.reset_at is not None and now >= pipe.reset_at):
                await trio.lowlevel.checkpoint()
                raise ConnectionClosedError("connection reset", transport="simnet")
            deadline = math.inf if pipe.reset_at is None else pipe.reset_at
            if pipe.items:
                stamp, chunk = pipe.items[0]
                if stamp <= now:
                    await trio.lowlevel.checkpoint()
                    return self._take(chunk, n)
                deadline = min(deadline, stamp)
            if pipe.wakeup is not None:
                raise trio.BusyResourceError("another task is reading this simulated stream")
            pipe.wakeup = trio.Event()
            try:
                with trio.move_on_at(deadline):
                    await pipe.wakeup.wait()
            finally:
                pipe.wakeup = None

    def _take(self, chunk: bytes | None, n: int | None) -> bytes:
        pipe = self._in
        if chunk is None:
            return b""  # the end-of-stream stays queued: every later read sees it too
        counters = pipe.dst.counters
        if n is not None and n < len(chunk):
            pipe.items[0] = (pipe.items[0][0], chunk[n:])
            chunk = chunk[:n]
        else:
            pipe.items.popleft()
            counters.messages_received += 1
        counters.bytes_received += len(chunk)
        return chunk

    async def write(self, data: bytes) -> None:
        """Send ``data`` (it arrives after the model's delays).

        Silently ignored once this end is closed, as py-libp2p's TCP stream does.

        :raises ConnectionClosedError: the connection was reset or the other end has closed.
        """
        await trio.lowlevel.checkpoint()
        if self._closed:
            return
        now = trio.current_time()
        pipe = self._in
        if self._aborted or (pipe.reset_at is not None and now >= pipe.reset_at):
            raise ConnectionClosedError("connection reset", transport="simnet")
        if pipe.eof_at is not None and now >= pipe.eof_at:
            raise ConnectionClosedError("connection closed by the other end", transport="simnet")
        if data:
            self._connection.network._send(self._out, bytes(data))

    async def close(self) -> None:
        """Close this end: the other end reads the data already sent, then end-of-stream."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        self._in.wake()
        if not self._aborted:
            self._connection.network._send(self._out, None)
        self._connection._end_closed()

    def _abort(self, notify_at: float) -> None:
        """Reset: this end fails at once, the other end at ``notify_at``."""
        self._aborted = True
        self._in.wake()
        if self._out.reset_at is None:
            self._out.reset_at = notify_at
            self._out.wake()

    def get_remote_address(self) -> tuple[str, int] | None:
        """The other end's (address, port)."""
        return self._remote

    def get_local_address(self) -> tuple[str, int]:
        """This end's (address, port)."""
        connection = self._connection
        if self is connection.dialer_end:
            return connection.dialer.ip, connection.dial_port
        return connection.listener.ip, connection.dialer_end._remote[1]


class SimConnection:
    """A simulated TCP connection between two nodes: two pipes, two :class:`SimStream` ends."""

    def __init__(
        self,
        network: SimNetwork,
        dialer: SimNode,
        dial_port: int,
        listener: SimNode,
        listen_port: int,
    ) -> None:
        self.network = network
        self.dialer = dialer
        self.listener = listener
        self.dial_port = dial_port
        up, down = _Pipe(dialer, listener), _Pipe(listener, dialer)
        self.pipes = (up, down)
        self.dialer_end = SimStream(self, down, up, (listener.ip, listen_port))
        self.listener_end = SimStream(self, up, down, (dialer.ip, dial_port))
        self._open_ends = 2
        self._forgotten = False
        dialer._connections.add(self)
        listener._connections.add(self)

    def reset(self, by: SimNode) -> None:
        """Abort the connection from ``by``'s side: its end fails at once, the other end's
        reads and writes fail when the reset arrives there, one latency later."""
        if by is self.dialer:
            end, other = self.dialer_end, self.listener_end
        elif by is self.listener:
            end, other = self.listener_end, self.dialer_end
        else:
            raise ValueError(f"node {by.ip} is not an end of this connection")
        end._abort(trio.current_time() + self.network.latency_between(by, other._out.src))
        self._forget()

    def _end_closed(self) -> None:
        self._open_ends -= 1
        if self._open_ends == 0:
            self._forget()

    def _forget(self) -> None:
        if self._forgotten:
            return
        self._forgotten = True
        self.dialer._ports.release(self.dial_port)
        self.dialer._connections.discard(self)
        self.listener._connections.discard(self)
        self.network._stalled.difference_update(self.pipes)


class SimListener(IListener):
    """Accepts simulated connections for one node (py-libp2p ``IListener``).

    The swarm sets ``background_nursery`` before :meth:`listen`; each accepted connection's
    handler runs there, for the life of the connection.
    """

    def __init__(self, network: SimNetwork, node: SimNode, handler: THandler) -> None:
        self._network = network
        self._node = node
        self._handler = handler
        self._ports: list[int] = []
        self.background_nursery: trio.Nursery | None = None

    async def listen(self, maddr: Multiaddr) -> None:
        """Listen on ``maddr`` (``/ip4/<this node's ip or 0.0.0.0>/tcp/<port or 0>``).

        :raises OpenConnectionError: not this node's address, or the port is taken.
        """
        await trio.lowlevel.checkpoint()
        ip, port = _ip_port(maddr)
        if ip not in (self._node.ip, "0.0.0.0"):
            raise OpenConnectionError(f"cannot listen on {maddr}: node {self._node.ip} has no {ip}")
        if port == 0:
            port = DEFAULT_LISTEN_PORT
            while port in self._node._listeners:
                port += 1
        if port in self._node._listeners:
            raise OpenConnectionError(f"cannot listen on {maddr}: port {port} is in use")
        self._node._listeners[port] = self
        self._ports.append(port)

    def get_addrs(self) -> tuple[Multiaddr, ...]:
        """The addresses this listener listens on (with the actual ports)."""
        return tuple(self._node.listen_addr(port) for port in self._ports)

    async def close(self) -> None:
        """Stop accepting connections; open ones are not affected."""
        await trio.lowlevel.checkpoint()
        for port in self._ports:
            if self._node._listeners.get(port) is self:
                del self._node._listeners[port]
        self._ports.clear()

    def _accept(self, stream: SimStream) -> None:
        nursery = self.background_nursery
        if nursery is None:
            raise OpenConnectionError("listener has no background nursery (swarm not running)")
        nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: SimStream) -> None:
        try:
            await self._handler(stream)
        except Exception:
            # As py-libp2p's TCP listener: one failed inbound connection must not end the node.
            logger.debug(
                "inbound connection from %s failed", stream.get_remote_address(), exc_info=True
            )
            stream._connection.reset(by=self._node)


class SimTransport(ITransport):
    """The py-libp2p transport of one :class:`SimNode` (``/ip4/<ip>/tcp/<port>`` addresses)."""

    def __init__(self, network: SimNetwork, node: SimNode) -> None:
        self._network = network
        self._node = node

    async def dial(self, maddr: Multiaddr) -> IRawConnection:
        """Connect to ``maddr``; costs one round trip.

        :raises OpenConnectionError: refused (nothing listens there: after one round trip) or
            unreachable (unknown or crashed node, partition, NAT: after ``dial_fail_delay``).
        """
        ip, port = _ip_port(maddr)
        stream = await self._network._dial(self._node, ip, port)
        return RawConnection(stream, True, addresses=[Multiaddr(f"/ip4/{ip}/tcp/{port}")])

    def create_listener(self, handler_function: THandler) -> SimListener:
        """A listener for this node; connections go to ``handler_function``."""
        return SimListener(self._network, self._node, handler_function)

    def can_dial(self, maddr: Multiaddr) -> bool:
        """True for plain ``/ip4/…/tcp/…`` addresses (no websocket, no QUIC, no relay)."""
        names = [p.name for p in maddr.protocols()]
        return names[:2] == ["ip4", "tcp"] and all(name == "p2p" for name in names[2:])

    def can_listen(self, maddr: Multiaddr) -> bool:
        """Same addresses as :meth:`can_dial`."""
        return self.can_dial(maddr)

    def protocols(self) -> list[str]:
        """The multiaddr protocols this transport handles."""
        return ["tcp"]


class SimNetwork:
    """The emulated network: its nodes, addresses, latency/bandwidth/loss model and partitions.

    :param latency: one-way latency in seconds, a number or a function of two addresses.
    :param loss: probability that a write is lost and retransmitted (repeatedly).
    :param min_rto: lowest retransmission timeout in seconds (Linux: 0.2); the timeout is
        ``max(min_rto, 2 * RTT)`` and doubles at each retransmission of the same write.
    :param dial_fail_delay: seconds an unanswered dial (partition, NAT, crashed node) takes to
        fail.
    :param subnet: the IPv4 range node addresses come from.
    :param hosts_per_subnet: nodes per /24 (1..254).
    :param seed: seeds the loss model.
    """

    def __init__(
        self,
        *,
        latency: float | LatencyFn = 0.025,
        loss: float = 0.0,
        min_rto: float = 0.2,
        dial_fail_delay: float = 5.0,
        subnet: str = "10.0.0.0/8",
        hosts_per_subnet: int = 16,
        seed: int = 0,
    ) -> None:
        self._latency = latency if callable(latency) else constant_latency(latency)
        if not 0 <= loss < 1:
            raise ConfigError(f"loss must be in [0, 1), not {loss!r}")
        if not min_rto > 0 or not dial_fail_delay >= 0:
            raise ConfigError("min_rto must be > 0 and dial_fail_delay >= 0")
        try:
            self._subnet = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise ConfigError(f"subnet {subnet!r} is not an IPv4 network: {exc}") from exc
        if not 1 <= hosts_per_subnet <= 254:
            raise ConfigError(f"hosts_per_subnet must be in 1..254, not {hosts_per_subnet!r}")
        self.loss = loss
        self.min_rto = min_rto
        self.dial_fail_delay = dial_fail_delay
        self._hosts_per_subnet = hosts_per_subnet
        self._rng = random.Random(seed)
        self._nodes: list[SimNode] = []
        self._by_ip: dict[str, SimNode] = {}
        self._group: dict[str, int] = {}
        self._stalled: set[_Pipe] = set()

    # -- nodes and addresses -------------------------------------------------------------

    def add_node(self, node_class: NodeClass = PUBLIC) -> SimNode:
        """A new node with the next free address.

        :raises ConfigError: the subnet has no address left.
        """
        index = len(self._nodes)
        ip = self.address_of(index)
        node = SimNode(ip=ip, node_class=node_class, index=index)
        # Each address starts its dialling ports at a different place, as real hosts do.
        node._ports = _Ports(EPHEMERAL_PORTS.start + (index * 7919) % len(EPHEMERAL_PORTS))
        self._nodes.append(node)
        self._by_ip[ip] = node
        return node

    def address_of(self, index: int) -> str:
        """The address the ``index``-th node gets: ``hosts_per_subnet`` to a /24, in order.

        :raises ConfigError: beyond the subnet.
        """
        block, host = divmod(index, self._hosts_per_subnet)
        first = int(self._subnet.network_address)
        address = ipaddress.IPv4Address(first + block * 256 + host + 1) if index >= 0 else None
        if address is None or address not in self._subnet or address.packed[-1] in (0, 255):
            raise ConfigError(f"subnet {self._subnet} has no address for node {index}")
        return str(address)

    @property
    def nodes(self) -> list[SimNode]:
        """All nodes, in the order they were added."""
        return list(self._nodes)

    def node(self, ip: str) -> SimNode:
        """The node with address ``ip``; KeyError if none."""
        return self._by_ip[ip]

    def transport(self, node: SimNode) -> SimTransport:
        """A py-libp2p transport for ``node`` (pass it to ``new_host(transports=[...])``)."""
        if self._by_ip.get(node.ip) is not node:
            raise ConfigError(f"node {node.ip} is not part of this network")
        return SimTransport(self, node)

    def latency_between(self, a: SimNode, b: SimNode) -> float:
        """One-way latency from ``a`` to ``b`` in seconds."""
        return self._latency(a.ip, b.ip)

    # -- faults --------------------------------------------------------------------------

    def partition(self, *groups: Iterable[SimNode]) -> None:
        """Split the network: nodes in different groups (the unlisted nodes form one more
        group) cannot reach one another until :meth:`heal`.  Replaces an earlier partition."""
        self._group = {}
        for number, group in enumerate(groups, start=1):
            for node in group:
                if node.ip in self._group:
                    raise ConfigError(f"node {node.ip} is in two partition groups")
                self._group[node.ip] = number

    def heal(self) -> None:
        """End the partition: held bytes are delivered, in order, from now on."""
        self._group = {}
        stalled, self._stalled = self._stalled, set()
        for pipe in stalled:
            held, pipe.held = pipe.held, []
            for chunk in held:
                self._stamp(pipe, chunk)

    def reachable(self, a: SimNode, b: SimNode) -> bool:
        """Whether ``a`` and ``b`` can exchange bytes now (same side of any partition)."""
        return self._group.get(a.ip, 0) == self._group.get(b.ip, 0)

    def crash(self, node: SimNode) -> None:
        """Take ``node`` down: its connections are reset and dials to and from it fail."""
        node.down = True
        for connection in list(node._connections):
            connection.reset(by=node)

    def restart(self, node: SimNode) -> None:
        """Bring a crashed node's address back up (its hosts must be started again)."""
        node.down = False

    # -- internals -----------------------------------------------------------------------

    def _admits(self, dst: SimNode, src: SimNode) -> bool:
        nat = dst.node_class.nat
        if nat is Nat.PUBLIC:
            return True
        return nat is Nat.CONE and src.ip in dst._dialled

    async def _dial(self, src: SimNode, ip: str, port: int) -> SimStream:
        src.counters.dials_out += 1
        src._dialled.add(ip)
        dst = self._by_ip.get(ip)
        try:
            if src.down:
                raise OpenConnectionError(f"{src.ip} is down")
            if (
                dst is None
                or dst.down
                or not self.reachable(src, dst)
                or not self._admits(dst, src)
            ):
                await trio.sleep(self.dial_fail_delay)
                raise OpenConnectionError(f"dial {ip}:{port} from {src.ip} timed out")
            await trio.sleep(self.latency_between(src, dst) + self.latency_between(dst, src))
            listener = dst._listeners.get(port)
            if listener is None or dst.down or src.down:
                raise OpenConnectionError(f"dial {ip}:{port} from {src.ip}: connection refused")
            connection = SimConnection(self, src, src._ports.take(), dst, port)
            dst.counters.dials_in += 1
            listener._accept(connection.listener_end)
        except OpenConnectionError:
            src.counters.dials_failed += 1
            raise
        return connection.dialer_end

    def _send(self, pipe: _Pipe, chunk: bytes | None) -> None:
        if chunk is not None:
            counters = pipe.src.counters
            counters.bytes_sent += len(chunk)
            counters.messages_sent += 1
        if pipe.held or not self.reachable(pipe.src, pipe.dst):
            pipe.held.append(chunk)
            self._stalled.add(pipe)
            return
        self._stamp(pipe, chunk)

    def _stamp(self, pipe: _Pipe, chunk: bytes | None) -> None:
        now = trio.current_time()
        src = pipe.src
        size = len(chunk) if chunk is not None else 0
        sent = max(now, src._uplink_free_at) + size / src.node_class.uplink
        src._uplink_free_at = sent
        one_way = self.latency_between(src, pipe.dst)
        delay = one_way
        if self.loss:
            rto = max(self.min_rto, 2 * (one_way + self.latency_between(pipe.dst, src)))
            retransmits = 0
            while retransmits < _MAX_RETRANSMITS and self._rng.random() < self.loss:
                retransmits += 1
            delay += rto * (2**retransmits - 1)
        stamp = max(pipe.last, sent + delay)
        pipe.last = stamp
        if chunk is None:
            pipe.eof_at = stamp
        pipe.items.append((stamp, chunk))
        if len(pipe.items) == 1:
            pipe.wake()


def _ip_port(maddr: Multiaddr) -> tuple[str, int]:
    """The IPv4 address and TCP port of ``/ip4/<ip>/tcp/<port>[/p2p/…]``."""
    try:
        ip = maddr.value_for_protocol("ip4")
        port = maddr.value_for_protocol("tcp")
    except Exception as exc:  # multiaddr raises several types for a missing protocol
        raise OpenConnectionError(f"{maddr} is not an /ip4/…/tcp/… address") from exc
    if ip is None or port is None:
        raise OpenConnectionError(f"{maddr} is not an /ip4/…/tcp/… address")
    return str(ip), int(port)
