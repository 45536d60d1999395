"""The node's resource manager: what each peer, and all peers together, may make the node hold.

Every buffer, stream and link the node keeps on a peer's behalf is *reserved* here before it is
allocated and *released* when it goes away.  A reservation must fit two scopes: the peer's and
the node's (the sum over all peers).  Each scope has a budget per resource (the limits are
:class:`~dndm_p2p.config.ResourceLimits`):

``memory``
    bytes, reserved under a *use*: ``control_queue`` (control frames queued to the peer),
    ``unacked`` (reliable messages sent to it and not yet acknowledged), ``queued`` (what its
    links' queues keep alive, estimated by each link's writer), ``partial_frames``
    (the largest frame each of the peer's streams may hold half-received);
``streams``
    data streams the peer opened to us;
``links``
    the peer's subscriptions to our routes (a parked reliable link keeps its reservation);
``queue_slots``
    the sum of the publisher-side queue depths of the peer's links.

A refused reservation raises :class:`~dndm_p2p.errors.ResourceLimitExceeded` (naming the peer,
the resource, its use, the scope, the size asked and the limit); nothing was reserved then.
Every refusal is counted by resource and use, and a peer refused
``limits.refusals_to_drop`` times within ``limits.refusal_window`` seconds is handed to the
``drop_peer`` callback once (the node then ends its session and reports a ``peer_dropped``
event).  :meth:`ResourceManager.snapshot` gives the counters and current use.

Reservations are plain integer arithmetic in the trio thread: no lock, no task, no allocation
but the peer's scope (made on its first reservation, forgotten when it holds nothing).

**The bound under one hostile peer.**  Whatever one peer does, the node holds on its behalf
at most ``peer_memory`` bytes of dndm buffers (16 MiB by default: control out-queue, unacked
reliable messages, what its links' queues keep alive, partial frames; the queues' share is an
estimate made at every batch and at least once a second, so between two checks a queue may run
ahead of it by what the publishers send meanwhile, at most ``link_depth`` messages), plus
``peer_queue_slots`` references in its links' queues (65,536 x 8 B = 512 KiB), plus what yamux
buffers for the peer's streams that are not being read, at
most the receive window each stream was granted (the window is enforced by
:func:`protocols.libp2p_fixes.yamux.windowed_yamux`; py-libp2p's auto-tuning grows a window to
at most 16 MiB).  The node reads every stream the peer opens as data arrives; the streams it
does not read are its own control stream to the peer (which the peer must not write) and its
own data links that a full local subscriber paused.  With the defaults and one such stream:
**about 33 MiB per peer** (16 MiB + 0.5 MiB + 16 MiB), and the dndm buffers of all peers
together stay under ``node_memory`` (256 MiB).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from dndm_p2p.config import ResourceLimits
from dndm_p2p.errors import ResourceLimitExceeded

__all__ = ["RESOURCES", "PeerAccount", "Resource", "ResourceManager", "ResourceSnapshot"]

Resource = Literal["memory", "streams", "links", "queue_slots"]
RESOURCES: Final[tuple[Resource, ...]] = ("memory", "streams", "links", "queue_slots")


@dataclass(frozen=True, slots=True)
class ResourceSnapshot:
    """The manager's counters at one moment (plain values, safe to keep or export).

    ``node`` is the current use of the whole node per resource; ``peers`` the use of each
    peer that holds anything; ``memory_by_use`` the node's memory per use; ``refusals`` counts
    refusals by ``"<resource>/<use>"``; ``clamped`` counts link depths reduced to
    ``link_depth``; ``dropped_peers`` counts peers dropped for repeated refusals.
    """

    node: dict[str, int]
    peers: dict[str, dict[str, int]]
    memory_by_use: dict[str, int]
    refusals: dict[str, int]
    clamped: int
    dropped_peers: int
    limits: dict[str, int] = field(default_factory=dict)


class _Scope:
    """The use of one scope (a peer, or the node) per resource."""

    __slots__ = ("refused_at", "used")

    def __init__(self) -> None:
        self.used: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        #: Monotonic times of the latest refusals (a peer scope only).
        self.refused_at: deque[float] = deque()

    def empty(self) -> bool:
        return not any(self.used.values())


class ResourceManager:
    """The per-peer and per-node budgets of one node (see the module docstring).

    ``drop_peer(peer, error)`` is called (synchronously) when a peer keeps exceeding its
    limits; it must not reserve or release anything itself.
    """

    def __init__(
        self,
        limits: ResourceLimits,
        *,
        drop_peer: Callable[[str, ResourceLimitExceeded], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._drop_peer = drop_peer
        self._clock = clock
        self._node = _Scope()
        self._peers: dict[str, _Scope] = {}
        self._memory_by_use: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self.clamped = 0
        self.dropped_peers = 0
        self._peer_limits: dict[str, int] = {
            "memory": limits.peer_memory,
            "streams": limits.peer_streams,
            "links": limits.peer_links,
            "queue_slots": limits.peer_queue_slots,
        }
        self._node_limits: dict[str, int] = {
            "memory": limits.node_memory,
            "streams": limits.node_streams,
            "links": limits.node_links,
            "queue_slots": limits.node_queue_slots,
        }

    # -- reserving ---------------------------------------------------------------------------

    def reserve(self, peer: str, resource: Resource, amount: int, use: str = "") -> None:
        """Reserve ``amount`` of ``resource`` for ``peer``, or raise
        :class:`ResourceLimitExceeded` (and reserve nothing) when the peer's or the node's
        budget would go past its limit.  ``use`` names what it is for (counted per use)."""
        scope = self._peers.get(peer)
        if scope is None:
            scope = self._peers[peer] = _Scope()
        peer_used = scope.used[resource] + amount
        node_used = self._node.used[resource] + amount
        if peer_used > self._peer_limits[resource]:
            self._refuse(peer, scope, resource, amount, use, "peer", self._peer_limits[resource])
        if node_used > self._node_limits[resource]:
            self._refuse(peer, scope, resource, amount, use, "node", self._node_limits[resource])
        scope.used[resource] = peer_used
        self._node.used[resource] = node_used
        if resource == "memory":
            self._memory_by_use[use] += amount

    def release(self, peer: str, resource: Resource, amount: int, use: str = "") -> None:
        """Give back ``amount`` of ``resource`` that ``peer`` reserved (never below zero)."""
        if amount <= 0:
            return
        scope = self._peers.get(peer)
        if scope is None:
            return
        amount = min(amount, scope.used[resource])
        scope.used[resource] -= amount
        self._node.used[resource] -= amount
        if resource == "memory":
            self._memory_by_use[use] -= amount
        if scope.empty() and not scope.refused_at:
            del self._peers[peer]

    @contextmanager
    def reserved(self, peer: str, resource: Resource, amount: int, use: str = "") -> Iterator[None]:
        """Hold a reservation for the duration of the block (raises as :meth:`reserve`)."""
        self.reserve(peer, resource, amount, use)
        try:
            yield
        finally:
            self.release(peer, resource, amount, use)

    def account(self, peer: str) -> PeerAccount:
        """A handle that reserves and releases for ``peer`` (what a link keeps)."""
        return PeerAccount(self, peer)

    def used(self, peer: str, resource: Resource) -> int:
        """How much of ``resource`` ``peer`` holds now."""
        scope = self._peers.get(peer)
        return 0 if scope is None else scope.used[resource]

    def available(self, peer: str, resource: Resource) -> int:
        """How much more of ``resource`` ``peer`` may reserve now (within both scopes)."""
        return max(
            0,
            min(
                self._peer_limits[resource] - self.used(peer, resource),
                self._node_limits[resource] - self._node.used[resource],
            ),
        )

    def clamp_depth(self, depth: int) -> int:
        """``depth`` limited to ``limits.link_depth`` (a reduction is counted)."""
        if depth > self.limits.link_depth:
            self.clamped += 1
            return self.limits.link_depth
        return depth

    def count_refusal(self, error: ResourceLimitExceeded) -> None:
        """Count a refusal decided outside :meth:`reserve` (a bound checked by its caller),
        with the same consequences: a counter, and a strike against the peer."""
        key = f"{error.resource}/{error.use or ''}"
        self._refusals[key] += 1
        if error.peer is not None:
            scope = self._peers.get(error.peer)
            if scope is None:
                scope = self._peers[error.peer] = _Scope()
            self._strike(error.peer, scope, error)
            if scope.empty() and self._peers.get(error.peer) is scope and not scope.refused_at:
                del self._peers[error.peer]

    def _refuse(
        self,
        peer: str,
        scope: _Scope,
        resource: Resource,
        amount: int,
        use: str,
        where: str,
        limit: int,
    ) -> None:
        error = ResourceLimitExceeded(
            f"{peer} would hold {amount} more {resource} ({use or 'unspecified'}) past the "
            f"{where} limit of {limit}",
            resource=resource,
            scope=where,
            size=amount,
            limit=limit,
            use=use,
            peer=peer,
        )
        self._refusals[f"{resource}/{use}"] += 1
        self._strike(peer, scope, error)
        if scope.empty() and not scope.refused_at and self._peers.get(peer) is scope:
            del self._peers[peer]
        raise error

    def _strike(self, peer: str, scope: _Scope, error: ResourceLimitExceeded) -> None:
        now = self._clock()
        strikes = scope.refused_at
        strikes.append(now)
        horizon = now - self.limits.refusal_window
        while strikes and strikes[0] < horizon:
            strikes.popleft()
        if len(strikes) >= self.limits.refusals_to_drop:
            strikes.clear()
            self.dropped_peers += 1
            if self._drop_peer is not None:
                self._drop_peer(peer, error)

    def forget_peer(self, peer: str) -> None:
        """Forget ``peer``'s refusal history (its session ended); its reservations stay."""
        scope = self._peers.get(peer)
        if scope is not None:
            scope.refused_at.clear()
            if scope.empty():
                del self._peers[peer]

    # -- reporting ---------------------------------------------------------------------------

    def snapshot(self) -> ResourceSnapshot:
        """The current use and the counters (see :class:`ResourceSnapshot`)."""
        return ResourceSnapshot(
            node=dict(self._node.used),
            peers={peer: dict(scope.used) for peer, scope in self._peers.items()},
            memory_by_use={use: n for use, n in self._memory_by_use.items() if n},
            refusals=dict(self._refusals),
            clamped=self.clamped,
            dropped_peers=self.dropped_peers,
            limits={
                **{f"peer_{k}": v for k, v in self._peer_limits.items()},
                **{f"node_{k}": v for k, v in self._node_limits.items()},
            },
        )


class PeerAccount:
    """Reserves and releases for one peer (a link or a session keeps one)."""

    __slots__ = ("manager", "peer")

    def __init__(self, manager: ResourceManager, peer: str) -> None:
        self.manager = manager
        self.peer = peer

    def reserve(self, resource: Resource, amount: int, use: str = "") -> None:
        """As :meth:`ResourceManager.reserve` for this peer."""
        self.manager.reserve(self.peer, resource, amount, use)

    def release(self, resource: Resource, amount: int, use: str = "") -> None:
        """As :meth:`ResourceManager.release` for this peer."""
        self.manager.release(self.peer, resource, amount, use)
