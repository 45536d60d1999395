"""The py-libp2p side of the emulated network: simulated TCP endpoints, connections, streams.

:class:`SimNode` is one simulated machine (address, class, counters, listeners, connections,
dialling ports).  :class:`SimTransport` is its py-libp2p ``ITransport``: it dials through the
network and hands out :class:`SimListener` s; each :class:`SimConnection` is two in-memory
:class:`Pipe` s, one per direction, read and written through its two :class:`SimStream` ends
(``ReadWriteCloser`` s that py-libp2p wraps in ``RawConnection``).

These objects move bytes only through their :class:`Carrier` (the
:class:`~simnet.net.SimNetwork`), which stamps each write with its delivery time, holds it
across a partition, and places dials; a read sleeps until the stamp of the data at its head.
A close sends an end-of-stream after the data already written; a reset reaches the other end
one latency later and fails its reads and writes there.

Dialling ports are counted per address and wrap inside :data:`EPHEMERAL_PORTS`, skipping ports
still in use, so no address is ever an invalid multiaddr however many connections a run makes.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

import trio
from libp2p.abc import IListener, IRawConnection, ITransport
from libp2p.custom_types import THandler
from libp2p.io.abc import ReadWriteCloser
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.transport.exceptions import OpenConnectionError
from multiaddr import Multiaddr

from simnet.node_class import NodeClass

__all__ = [
    "DEFAULT_LISTEN_PORT",
    "EPHEMERAL_PORTS",
    "Carrier",
    "Counters",
    "DialPorts",
    "Pipe",
    "SimConnection",
    "SimListener",
    "SimNode",
    "SimStream",
    "SimTransport",
]

logger = logging.getLogger(__name__)

#: The port a node listens on when asked for port 0.
DEFAULT_LISTEN_PORT: Final = 4001
#: Dialling ports (Linux's default ephemeral range).
EPHEMERAL_PORTS: Final = range(32768, 61000)


class Carrier(Protocol):
    """The network under the transport (:class:`simnet.net.SimNetwork`): it carries the bytes
    written on a pipe, places dials, and knows the latency between two nodes."""

    def latency_between(self, a: SimNode, b: SimNode) -> float:
        """One-way latency from ``a`` to ``b`` in seconds."""
        ...

    def carry(self, pipe: Pipe, chunk: bytes | None) -> None:
        """Send ``chunk`` (None: end of stream) down ``pipe``: delivered in order, later."""
        ...

    async def connect(self, src: SimNode, ip: str, port: int) -> SimStream:
        """Dial ``ip:port`` from ``src``; the dialler's end of the new connection."""
        ...

    def abandon(self, pipes: Iterable[Pipe]) -> None:
        """Forget ``pipes``: what they hold across a partition is never delivered."""
        ...


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


class DialPorts:
    """Dialling ports of one address: a counter wrapping in EPHEMERAL_PORTS, skipping busy ones."""

    __slots__ = ("_in_use", "_next")

    def __init__(self, start: int) -> None:
        self._next = start
        self._in_use: set[int] = set()

    def take(self) -> int:
        """A free dialling port, now in use.

        :raises OpenConnectionError: every port of the range is in use.
        """
        span = len(EPHEMERAL_PORTS)
        for _ in range(span):
            port = self._next
            self._next = EPHEMERAL_PORTS.start + (port - EPHEMERAL_PORTS.start + 1) % span
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise OpenConnectionError(f"all {span} dialling ports of this address are in use")

    def release(self, port: int) -> None:
        """Return ``port`` (its connection is gone) to the free ports."""
        self._in_use.discard(port)


@dataclass(eq=False)
class SimNode:
    """One simulated machine: address, class, counters.

    Made by :meth:`simnet.net.SimNetwork.add_node`.  The ``_`` fields are the state that the
    network (NAT memory, uplink, dialling ports) and the transport (listeners, connections)
    keep for the node.
    """

    ip: str
    node_class: NodeClass
    index: int
    counters: Counters = field(default_factory=Counters)
    #: True while the node is down (crashed): it neither dials nor answers.
    down: bool = False
    _listeners: dict[int, SimListener] = field(default_factory=dict, repr=False)
    _dialled: set[str] = field(default_factory=set, repr=False)
    _ports: DialPorts = field(default_factory=lambda: DialPorts(EPHEMERAL_PORTS.start), repr=False)
    _uplink_free_at: float = field(default=-math.inf, repr=False)
    _connections: set[SimConnection] = field(default_factory=set, repr=False)

    def listen_addr(self, port: int = DEFAULT_LISTEN_PORT) -> Multiaddr:
        """The TCP multiaddr ``/ip4/<ip>/tcp/<port>`` of this node."""
        return Multiaddr(f"/ip4/{self.ip}/tcp/{port}")

    @property
    def connection_count(self) -> int:
        """Open connections of this node (either end still open)."""
        return len(self._connections)


class Pipe:
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
        """Wake the reader waiting on this pipe, if any."""
        if self.wakeup is not None:
            self.wakeup.set()


class SimStream(ReadWriteCloser):
    """One end of a simulated TCP connection (py-libp2p wraps it in ``RawConnection``)."""

    def __init__(
        self, connection: SimConnection, incoming: Pipe, outgoing: Pipe, remote: tuple[str, int]
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
            self._connection.network.carry(self._out, bytes(data))

    async def close(self) -> None:
        """Close this end: the other end reads the data already sent, then end-of-stream."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        self._in.wake()
        if not self._aborted:
            self._connection.network.carry(self._out, None)
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
        network: Carrier,
        dialer: SimNode,
        dial_port: int,
        listener: SimNode,
        listen_port: int,
    ) -> None:
        self.network = network
        self.dialer = dialer
        self.listener = listener
        self.dial_port = dial_port
        up, down = Pipe(dialer, listener), Pipe(listener, dialer)
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
        self.network.abandon(self.pipes)


class SimListener(IListener):
    """Accepts simulated connections for one node (py-libp2p ``IListener``).

    The swarm sets ``background_nursery`` before :meth:`listen`; each accepted connection's
    handler runs there, for the life of the connection.
    """

    def __init__(self, network: Carrier, node: SimNode, handler: THandler) -> None:
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

    def accept(self, stream: SimStream) -> None:
        """Serve a new connection (``stream`` is its listener end) in the background nursery.

        :raises OpenConnectionError: the swarm has not given this listener its nursery.
        """
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

    def __init__(self, network: Carrier, node: SimNode) -> None:
        self._network = network
        self._node = node

    async def dial(self, maddr: Multiaddr) -> IRawConnection:
        """Connect to ``maddr``; costs one round trip.

        :raises OpenConnectionError: refused (nothing listens there: after one round trip) or
            unreachable (unknown or crashed node, partition, NAT: after ``dial_fail_delay``).
        """
        ip, port = _ip_port(maddr)
        stream = await self._network.connect(self._node, ip, port)
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
