"""The node's public value types: events, snapshots of its links, peers and routes, and the
counters of a peer.

They are plain records, so that what reads them (the application, the admin endpoint,
the CLI) needs nothing else of the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dndm_p2p.errors import DndmError

__all__ = ["KnownRoute", "LinkStats", "NodeEvent", "PeerInfo", "PeerStats"]


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something that happened to the node: a peer came or went, or background work failed."""

    kind: str
    peer: str | None = None
    detail: str = ""
    error: DndmError | None = None


@dataclass(frozen=True, slots=True)
class LinkStats:
    """A snapshot of one remote link.

    ``direction`` is ``"out"`` for a peer's subscription to our route (we send) and ``"in"`` for
    ours to the peer's (we receive).  ``messages`` counts messages sent or received;
    ``dropped`` counts messages the publisher's link queue dropped (its subscriber's overflow
    policy), as counted by this end: the sender counts them as it drops them, the receiver as
    batches report them.
    """

    route: str
    peer: str
    direction: str
    messages: int
    dropped: int
    reliable: bool
    compression: str


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one connected peer."""

    peer: str
    name: str
    addrs: tuple[str, ...]
    rtt_us: int | None
    routes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KnownRoute:
    """One intent or interest the node knows of, and where it learnt of it.

    ``origin`` is ``"local"`` (declared here), ``"peer"`` (advertised by a connected peer on its
    control stream), ``"dht"`` (a provider record) or ``"gossip"`` (a GossipSub advert).
    ``route`` is the route or pattern as advertised; a hashed route shows only ``prefix#hash``.
    """

    route: str
    kind: str
    origin: str
    peer: str | None
    msg_type: str
    linked: bool


@dataclass
class PeerStats:
    """Counters and timings of one peer (kept by its session, updated as it runs)."""

    rtt_us: int | None = None
    rtt_ewma_us: float | None = None
    pings_sent: int = 0
    pongs_received: int = 0
    adverts_received: int = 0
    bad_adverts: int = 0
    #: Adverts forgotten because their TTL passed without a refresh.
    adverts_expired: int = 0
    #: Advert TTLs longer than ``NodeConfig.max_advert_ttl``, cut to it.
    advert_ttls_capped: int = 0
    protocol_errors: int = 0
    #: Control requests (adverts, pings) refused as over the peer's rate limit.
    rate_limited: int = 0
    links_opened: int = 0
    errors: list[str] = field(default_factory=list)
