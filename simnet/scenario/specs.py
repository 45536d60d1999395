"""The scenario's value types: frozen dataclasses, one per section of a scenario file.

A :class:`Scenario` holds every setting of one simulation run: the node classes
(:class:`ClassSpec`), the network (:class:`NetworkSpec`, :class:`LatencySpec`), how nodes join
(:class:`JoinSpec`), the DNDM node settings (:class:`NodeSpec`), the workload
(:class:`WorkloadSpec`) and the timed events (:class:`EventSpec`).  Values are built by
:func:`simnet.scenario.parse.parse_scenario`, which checks every field;
:func:`check_sizes` holds the checks that depend on the node count, so a scenario changed by
:meth:`Scenario.with_overrides` is checked as a file would be.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from protocols.errors import ConfigError

__all__ = [
    "DISCOVERY_MODES",
    "EVENT_KINDS",
    "ClassSpec",
    "EventSpec",
    "JoinSpec",
    "LatencySpec",
    "NetworkSpec",
    "NodeSpec",
    "Scenario",
    "WorkloadSpec",
    "check_sizes",
]

#: How nodes find each other's routes.
DISCOVERY_MODES: Final = ("dht", "gossip", "both")
#: Kinds of timed events, with the fields each takes (besides ``at`` and ``kind``).
EVENT_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "kill": frozenset({"count", "fraction", "target", "restart_after"}),
    "crash": frozenset({"count", "fraction", "target", "restart_after"}),
    "churn": frozenset({"count", "fraction", "target", "every", "until", "downtime"}),
    "partition": frozenset({"fraction"}),
    "heal": frozenset(),
    "latency_spike": frozenset({"factor", "duration"}),
    "bootstrap_failure": frozenset({"duration"}),
}


@dataclass(frozen=True)
class ClassSpec:
    """A class of (non-bootstrap) nodes: its share of the nodes, NAT, uplink and limits."""

    name: str
    share: float = 1.0
    nat: str = "public"
    uplink: float = math.inf
    max_connections: int = 160
    min_connections: int = 8
    low_watermark: int = 32
    high_watermark: int = 96


@dataclass(frozen=True)
class LatencySpec:
    """One-way latency: ``constant`` (``value``), ``uniform`` per pair (``min``..``max``), or
    ``regions`` (each node in one of ``regions`` with ``weights``; ``matrix[i][j]`` is the
    one-way latency from region i to j, plus up to ``jitter`` times it per pair)."""

    model: str = "constant"
    value: float = 0.025
    min: float = 0.0125
    max: float = 0.0375
    regions: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    matrix: tuple[tuple[float, ...], ...] = ()
    jitter: float = 0.0


@dataclass(frozen=True)
class NetworkSpec:
    """The emulated network: latency, loss (a write's probability of being retransmitted),
    and how long an unanswered dial takes to fail."""

    latency: LatencySpec = field(default_factory=LatencySpec)
    loss: float = 0.0
    dial_fail_delay: float = 5.0


@dataclass(frozen=True)
class JoinSpec:
    """How nodes join.

    ``bootstraps`` bootstrap servers start first.  Then the other nodes start in waves of
    ``concurrency`` (each wave waits until its nodes are up), at most ``rate`` per virtual
    second (0: no limit).  Each node is given ``peers`` entry points: the bootstrap servers
    (``mode = "fixed"``) or nodes picked at random among those already up (``"random"``).
    """

    bootstraps: int = 1
    mode: str = "fixed"
    peers: int = 1
    concurrency: int = 50
    rate: float = 0.0
    bootstrap_max_connections: int = 1000


@dataclass(frozen=True)
class NodeSpec:
    """DNDM node settings for every simulated node (``NodeConfig`` fields; ``namespace_depth``
    is its ``GossipConfig``'s)."""

    ping_interval: float = 10.0
    ping_timeout: float = 30.0
    handshake_timeout: float = 10.0
    compression: bool = True
    namespace_depth: int = 1


@dataclass(frozen=True)
class WorkloadSpec:
    """What the nodes publish and subscribe to once all have joined.

    ``routes`` routes (``ns<k>.route<i>.data``, spread over ``namespaces`` namespaces; either
    may be a percentage: of the nodes, of the routes), each
    with ``publishers`` publishing nodes and ``subscribers`` subscribing nodes, plus
    ``pattern_subscribers`` nodes subscribing to ``ns<k>.*.data``.  Declarations are spread
    over ``declare_spread`` seconds after ``start``.  Each publisher sends ``rate`` messages a
    second of ``size`` payload bytes until ``drain`` seconds before the end.  A subscription
    that lived ``discovery_window`` seconds without a message counts as a failed discovery.
    """

    routes: int = 10
    #: When > 0, the number of routes is this percentage of the nodes (at least 1).
    routes_percent: float = 0.0
    namespaces: int = 2
    #: When > 0, the number of namespaces is this percentage of the routes (at least 1).
    namespaces_percent: float = 0.0
    publishers: int = 1
    subscribers: int = 3
    pattern_subscribers: int = 0
    rate: float = 1.0
    size: int = 256
    reliable: bool = False
    discovery: str = "both"
    start: float = 0.0
    declare_spread: float = 5.0
    drain: float = 3.0
    discovery_window: float = 20.0

    def route_count(self, nodes: int) -> int:
        """How many routes a run with ``nodes`` nodes has."""
        if self.routes_percent > 0:
            return max(1, round(nodes * self.routes_percent / 100))
        return self.routes

    def namespace_count(self, routes: int) -> int:
        """How many namespaces ``routes`` routes are spread over."""
        if self.namespaces_percent > 0:
            return max(1, round(routes * self.namespaces_percent / 100))
        return self.namespaces


@dataclass(frozen=True)
class EventSpec:
    """A timed event (see :data:`EVENT_KINDS`); ``at`` counts from the workload's start."""

    at: float
    kind: str
    count: int | None = None
    fraction: float | None = None
    target: str = "any"
    restart_after: float | None = None
    every: float | None = None
    until: float | None = None
    downtime: float | None = None
    factor: float | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (see the module docstring)."""

    name: str
    nodes: int
    duration: float
    seed: int = 1
    description: str = ""
    watchdog: float = 3600.0
    sample_interval: float = 1.0
    security: str = "plaintext"
    muxer: str = "mplex"
    classes: tuple[ClassSpec, ...] = (ClassSpec("public"),)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    join: JoinSpec = field(default_factory=JoinSpec)
    node: NodeSpec = field(default_factory=NodeSpec)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    events: tuple[EventSpec, ...] = ()

    def with_overrides(self, *, nodes: int | None = None, seed: int | None = None) -> Scenario:
        """This scenario with another node count or seed (checked as in a file)."""
        changed = replace(
            self,
            nodes=self.nodes if nodes is None else nodes,
            seed=self.seed if seed is None else seed,
        )
        check_sizes(changed, self.name)
        return changed

    def as_dict(self) -> dict[str, Any]:
        """Every field, as plain JSON-able data."""
        found: dict[str, Any] = _jsonable(asdict(self))
        return found

    def config_hash(self) -> str:
        """SHA-256 (hex, 16 digits) of the canonical JSON of every field."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def class_counts(self) -> list[int]:
        """How many of the non-bootstrap nodes each class gets (largest remainder)."""
        others = self.nodes - self.join.bootstraps
        total = sum(c.share for c in self.classes)
        exact = [others * c.share / total for c in self.classes]
        counts = [math.floor(x) for x in exact]
        order = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
        for i in order[: others - sum(counts)]:
            counts[i] += 1
        return counts


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def check_sizes(scenario: Scenario, source: str) -> None:
    """Checks that depend on the node count (re-run after ``--nodes``)."""

    def fail(name: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {name}: {message}")

    if not 2 <= scenario.nodes <= 100_000:
        raise fail("nodes", f"must be an integer >= 2 and <= 100000, not {scenario.nodes}")
    others = scenario.nodes - scenario.join.bootstraps
    if others < 1:
        raise fail("join.bootstraps", f"leaves no other node out of {scenario.nodes}")
    work = scenario.workload
    for key in ("publishers", "subscribers", "pattern_subscribers"):
        if getattr(work, key) > others:
            raise fail(f"workload.{key}", f"is more than the {others} non-bootstrap nodes")
    if work.start + work.declare_spread + work.drain >= scenario.duration:
        raise fail("duration", "leaves no time to publish after start, declare_spread and drain")
    for i, event in enumerate(scenario.events):
        if event.at > scenario.duration:
            raise fail(f"events[{i}].at", f"is after the end ({scenario.duration} s)")
        if event.kind in ("kill", "crash", "churn") and event.count is not None:
            pool = scenario.join.bootstraps if event.target == "bootstrap" else others
            if event.count > pool:
                raise fail(f"events[{i}].count", f"is more than the {pool} nodes targeted")
