"""The emulated IP network for many py-libp2p hosts in one trio run: :class:`SimNetwork`.

Each simulated node (:class:`~simnet.transport.SimNode`) has one IPv4 address and reaches the
others through the py-libp2p transport :meth:`SimNetwork.transport` hands out
(:mod:`simnet.transport`), whose connections are in-memory byte pipes.  The normal upgrader
runs on top (multistream-select, Noise or plaintext, yamux or mplex), so the hosts are real
py-libp2p hosts.  Meant to run under ``trio.testing.MockClock`` (virtual time).

The model, owned by :class:`SimNetwork`:

* **Latency**: one-way seconds per pair of nodes (a :data:`LatencyFn` of the two addresses).
* **Uplink bandwidth** per node (its class): the node's writes are serialised on one uplink.
* **Loss** as retransmission delay: each write is retransmitted a geometric number of times,
  each time after a retransmission timeout that doubles (TCP-like: bytes arrive late, in order).
* **Partitions**: nodes in different groups cannot talk.  Dials between them fail after
  ``dial_fail_delay``; bytes written on an open connection are black-holed while the partition
  lasts and delivered in order after the heal (TCP keeps retransmitting), unless the connection
  was given up on meanwhile.
* **NAT classes** (:class:`~simnet.node_class.Nat`): public nodes accept every dial; a
  cone-NAT node accepts a dial only from an address it has dialled before; a symmetric-NAT
  node accepts none (it is reachable through relays only).  Refused dials fail like
  partitioned ones, after a delay.
* **Connection limits** per class (:class:`~simnet.node_class.NodeClass`), applied by the
  hosts built on the node.

Delivery has no forwarding task: each write is stamped with its delivery time,
``max(last stamp, now + size / uplink + latency + loss delay)`` (so delivery is FIFO), and a
read sleeps until the stamp of the data at its head.  A dial costs one round trip (the TCP
handshake).

Addresses come from a private range (``10.0.0.0/8`` by default; Kademlia's per-/24 subnet
limit exempts private ranges), ``hosts_per_subnet`` nodes to a /24.

The node classes and the transport objects are importable from here too.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Final

import trio
from libp2p.transport.exceptions import OpenConnectionError

from protocols.errors import ConfigError
from simnet.node_class import PUBLIC, Nat, NodeClass
from simnet.transport import (
    DEFAULT_LISTEN_PORT,
    EPHEMERAL_PORTS,
    Counters,
    DialPorts,
    Pipe,
    SimConnection,
    SimListener,
    SimNode,
    SimStream,
    SimTransport,
)

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

#: Most retransmissions of one write that the loss model charges.
_MAX_RETRANSMITS: Final = 8

LatencyFn = Callable[[str, str], float]
"""One-way latency in seconds from the first address to the second."""


def constant_latency(seconds: float) -> LatencyFn:
    """A latency function: the same one-way latency between every pair of nodes."""
    if not seconds >= 0:
        raise ConfigError(f"latency must be >= 0 seconds, not {seconds!r}")
    return lambda _a, _b: seconds


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
        self._stalled: set[Pipe] = set()

    # -- nodes and addresses -------------------------------------------------------------

    def add_node(self, node_class: NodeClass = PUBLIC) -> SimNode:
        """A new node with the next free address.

        :raises ConfigError: the subnet has no address left.
        """
        index = len(self._nodes)
        ip = self.address_of(index)
        node = SimNode(ip=ip, node_class=node_class, index=index)
        # Each address starts its dialling ports at a different place, as real hosts do.
        node._ports = DialPorts(EPHEMERAL_PORTS.start + (index * 7919) % len(EPHEMERAL_PORTS))
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

    # -- the transport's carrier (simnet.transport.Carrier) --------------------------------

    async def connect(self, src: SimNode, ip: str, port: int) -> SimStream:
        """Dial ``ip:port`` from ``src``: one round trip, then the dialler's end.

        :raises OpenConnectionError: refused (nothing listens there: after one round trip) or
            unreachable (unknown or crashed node, partition, NAT: after ``dial_fail_delay``).
        """
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
            listener.accept(connection.listener_end)
        except OpenConnectionError:
            src.counters.dials_failed += 1
            raise
        return connection.dialer_end

    def carry(self, pipe: Pipe, chunk: bytes | None) -> None:
        """Count and send ``chunk`` (None: end of stream) down ``pipe``; held while the
        partition between its ends lasts, else stamped with its delivery time."""
        if chunk is not None:
            counters = pipe.src.counters
            counters.bytes_sent += len(chunk)
            counters.messages_sent += 1
        if pipe.held or not self.reachable(pipe.src, pipe.dst):
            pipe.held.append(chunk)
            self._stalled.add(pipe)
            return
        self._stamp(pipe, chunk)

    def abandon(self, pipes: Iterable[Pipe]) -> None:
        """Forget ``pipes`` (their connection is gone): what they hold is never delivered."""
        self._stalled.difference_update(pipes)

    # -- internals -----------------------------------------------------------------------

    def _admits(self, dst: SimNode, src: SimNode) -> bool:
        nat = dst.node_class.nat
        if nat is Nat.PUBLIC:
            return True
        return nat is Nat.CONE and src.ip in dst._dialled

    def _stamp(self, pipe: Pipe, chunk: bytes | None) -> None:
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
