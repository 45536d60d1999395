"""Node configuration: one validated, immutable object, nesting one object per component.

Each component that has settings of its own gets them as one nested object, ``None`` when the
component is off: ``dht=DhtConfig()``, ``gossip=GossipConfig()``, ``mdns=MdnsConfig()``,
``nat=NatConfig()``.  Every class checks its own fields once, on construction, and a bad value
raises :class:`~dndm_p2p.errors.ConfigError` naming the field
(``NodeConfig.ping_interval: must be a number of seconds > 0, not -1``).  Importing this module
loads no py-libp2p module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dht.config import DhtConfig
from dndm_p2p.core.qos import QoS, SlowSubscriberMode
from dndm_p2p.discovery.config import DialLimits, GossipConfig, MdnsConfig
from dndm_p2p.host.limits import ConnectionLimits
from nat.config import NatConfig
from protocols.addrs import peer_addr_problem
from protocols.ids import MAX_CONTROL_FRAME_SIZE, MAX_FRAME_SIZE
from protocols.validation import (
    check_choice,
    check_count,
    check_flag,
    check_instance,
    check_rate,
    check_seconds,
    check_size,
    check_strings,
    invalid,
)

__all__ = [
    "ConnectionLimits",
    "DhtConfig",
    "DialLimits",
    "GossipConfig",
    "MdnsConfig",
    "NatConfig",
    "NodeConfig",
    "ResourceLimits",
]

_SECONDS = (
    "ping_interval",
    "ping_timeout",
    "handshake_timeout",
    "reconnect_initial",
    "reconnect_max",
    "reliable_grace",
    "message_ttl",
    "max_advert_ttl",
    "slow_subscriber_deadline",
)


_KIB = 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ResourceLimits:
    """The budgets of the node's resource manager (:mod:`dndm_p2p.node.resources`).

    ``peer_*`` limits hold for each peer, ``node_*`` limits for all peers together; a request
    must fit both.  Memory is in bytes: what the node holds on a peer's behalf (outgoing
    control frames, unacknowledged reliable messages, what its links' queues keep alive, frames
    being received).  The defaults
    bound what one hostile peer can make the node hold; the module docstring of
    :mod:`dndm_p2p.node.resources` states the bound.
    """

    #: Bytes a peer may make the node hold (control out-queue, unacked, partial frames).
    peer_memory: int = 16 * _MIB
    #: Bytes all peers together may make the node hold.
    node_memory: int = 256 * _MIB
    #: Data streams a peer may have open to the node at once.
    peer_streams: int = 128
    node_streams: int = 8192
    #: Links (subscriptions to our routes) a peer may hold, parked reliable ones included.
    peer_links: int = 128
    node_links: int = 8192
    #: Largest publisher-side queue depth of one link; a larger request is clamped (counted).
    link_depth: int = 16_384
    #: Bytes of messages one link's queue may keep alive (estimated; see ``OutboundLink``).
    link_queue_bytes: int = 4 * _MIB
    #: Queue slots (the sum of its links' depths) a peer's links may hold.
    peer_queue_slots: int = 65_536
    node_queue_slots: int = 1 << 20
    #: Bytes and frames of the control out-queue to one peer (pongs, adverts, results).
    control_queue_bytes: int = 1 * _MIB
    control_queue_frames: int = 1024
    #: Largest ping payload answered; a larger ping is refused (the frame limit still holds).
    ping_payload: int = 1 * _KIB
    #: Largest frame a subscriber sends on a data stream (LinkOpen, acks, results).
    subscriber_frame_size: int = 16 * _KIB
    #: A peer refused this many times within ``refusal_window`` seconds is dropped.
    refusals_to_drop: int = 16
    refusal_window: float = 10.0

    def __post_init__(self) -> None:
        for name in ("peer_memory", "node_memory", "control_queue_bytes", "link_queue_bytes"):
            check_size(self, name, at_least=64 * _KIB)
        for name in (
            "peer_streams",
            "node_streams",
            "peer_links",
            "node_links",
            "link_depth",
            "peer_queue_slots",
            "node_queue_slots",
            "control_queue_frames",
            "refusals_to_drop",
        ):
            check_count(self, name, at_least=1)
        check_size(self, "ping_payload", at_least=0, at_most=MAX_CONTROL_FRAME_SIZE - 1024)
        check_size(self, "subscriber_frame_size", at_least=1024, at_most=MAX_FRAME_SIZE)
        check_seconds(self, "refusal_window", above=0)
        for peer_name, node_name in (
            ("peer_memory", "node_memory"),
            ("peer_streams", "node_streams"),
            ("peer_links", "node_links"),
            ("peer_queue_slots", "node_queue_slots"),
        ):
            if getattr(self, peer_name) > getattr(self, node_name):
                raise invalid(self, peer_name, f"must be at most {node_name}")
        if self.link_depth > self.peer_queue_slots:
            raise invalid(self, "link_depth", "must be at most peer_queue_slots")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a :class:`~dndm_p2p.node.Node` can be told.

    The defaults give a working node on loopback with a fresh identity: no configuration needed.
    Times are in seconds.  Discovery and NAT traversal are off until given their settings::

        NodeConfig(dht=DhtConfig(), gossip=GossipConfig(), bootstrap=(boot,))
    """

    #: A human-readable name, sent in the hello (the identity is the peer id).
    name: str = ""
    #: Multiaddrs to listen on.
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    #: Ed25519 key file; created on first use. ``None``: a fresh identity every start.
    key_file: Path | None = None
    #: Peers (``/ip4/…/tcp/…/p2p/<id>``) to connect to at start and to keep connected.
    peers: tuple[str, ...] = ()
    #: Also listen on QUIC (``/udp/…/quic-v1``) next to TCP.
    quic: bool = False
    #: Offer zstd/lz4 compression of large batches to peers.
    compression: bool = True
    #: Default QoS of interests that give none.
    default_qos: QoS = field(default_factory=QoS)
    #: Seconds between pings on each control stream.
    ping_interval: float = 2.0
    #: A peer silent for this long is dropped (its links close).
    ping_timeout: float = 10.0
    #: How long a peer may take to open a link or answer a hello.
    handshake_timeout: float = 10.0
    #: First and largest delay between reconnection attempts (exponential, with jitter).
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    #: Attempts before giving up on a peer that was not configured (``None``: never give up).
    reconnect_attempts: int | None = 30
    #: How long a reliable link waits for its subscriber to come back before it is dropped.
    reliable_grace: float = 30.0
    #: Reliable messages older than this are not resent after a reconnection.
    message_ttl: float = 30.0
    #: What a remote subscriber that does not keep up gets, for routes whose ``publish()``
    #: names no ``slow_subscriber``: ``"drop"`` (messages dropped for it alone, counted and
    #: reported to it) or ``"evict"`` (dropped, then evicted after the deadline).
    slow_subscriber: SlowSubscriberMode = SlowSubscriberMode.DROP
    #: How long a remote link may lag before the publisher acts: an ``evict`` link dropping
    #: messages this long is evicted, and a full reliable link that makes no progress this long
    #: is given up (so no remote subscriber holds a ``send()`` back longer than this).
    slow_subscriber_deadline: float = 2.0
    #: Most messages the publisher queues for one unreliable remote link: a subscriber that
    #: drops on overflow gets its own depth within this bound, one that asks for ``block`` (it
    #: cannot block the publisher) gets all of it.
    link_queue_depth: int = 16384
    #: Most messages a reliable link queues, and most it keeps unacknowledged; a reliable
    #: subscriber that falls further behind is given up (told ``SLOW_SUBSCRIBER``).
    reliable_link_depth: int = 16384
    #: Limits that protect the node from a hostile or broken peer.
    max_frame_size: int = MAX_FRAME_SIZE
    max_remote_adverts: int = 10_000
    #: Longest lifetime a peer's advert gets from its ``ttl_ms`` (seconds); longer ones are
    #: cut to it (``ttl_ms = 0`` still means "until unregistered or disconnected").
    max_advert_ttl: float = 3600.0
    #: Peers whose incarnation (start) the node remembers, to tell a peer's restart from its
    #: reconnection (the least recently seen are forgotten first).
    remembered_incarnations: int = 4096
    max_links_per_peer: int = 1024
    #: Control requests (advert batches, pings) served per second to one peer, on average,
    #: and how many it may send at once above that; beyond, they are refused (RATE_LIMITED).
    control_rate: float = 50.0
    control_burst: int = 200
    #: Most connections the host keeps open (a bootstrap server wants more).
    max_connections: int = 300
    #: Budgets of memory, streams and links, per peer and for the node.
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    #: Most peers the host's peer store remembers; the least recently seen disconnected ones
    #: are forgotten first (the node's own entry and connected peers never are).
    max_peers: int = 2000
    #: Which inbound connections the host admits: per IP and subnet, pending handshakes, and
    #: a smaller budget for peers that do not speak DNDM (DHT-only clients, say).
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: What discovery may dial, and how often (only addresses peers signed for themselves).
    dial_limits: DialLimits = field(default_factory=DialLimits)

    # -- discovery ---------------------------------------------------------------------------
    #: Bootstrap nodes (``/ip4/…/tcp/…/p2p/<id>``): connected at start and used to seed the DHT
    #: routing table (and, with NAT traversal, as relay candidates).  Unlike :attr:`peers`,
    #: they are not linked with unless routes match.
    bootstrap: tuple[str, ...] = ()
    #: Find peers through the Kademlia DHT (provider records per route); ``None``: off.
    dht: DhtConfig | None = None
    #: Find peers through signed GossipSub adverts (one topic per namespace); ``None``: off.
    #: A well-known entry point (a bootstrap server) relays every advert topic:
    #: ``GossipConfig(relay_all=True)``, with a larger :attr:`max_connections`.
    gossip: GossipConfig | None = None
    #: Find peers on the LAN with mDNS, on the interface addresses it names; ``None``: off.
    mdns: MdnsConfig | None = None
    #: A file where the node keeps the addresses of peers it has met, across restarts.
    address_book: Path | None = None
    #: A Unix socket where ``dndm routes`` and ``dndm peers`` can query the running node.
    admin_socket: Path | None = None

    # -- NAT traversal -----------------------------------------------------------------------
    #: Reachability (AutoNAT), circuit relays (serving, reserving, dialling ``/p2p-circuit``
    #: addresses), hole punching and UPnP, as :class:`nat.NatConfig` sets them; ``None``: off.
    nat: NatConfig | None = None

    @property
    def discovers(self) -> bool:
        """True when the node runs discovery (a DHT, gossip, mDNS or bootstrap nodes)."""
        return bool(self.dht or self.gossip or self.mdns or self.bootstrap)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise invalid(self, "name", f"must be a string, not {self.name!r}")
        for name in ("listen", "peers", "bootstrap"):
            check_strings(self, name)
        for name in ("peers", "bootstrap"):
            for addr in getattr(self, name):
                problem = peer_addr_problem(addr)
                if problem is not None:
                    raise invalid(self, name, problem)
        for name in ("key_file", "address_book", "admin_socket"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        check_flag(self, "quic")
        check_flag(self, "compression")
        check_instance(self, "default_qos", QoS)
        for name in _SECONDS:
            check_seconds(self, name, above=0)
        if self.ping_timeout <= self.ping_interval:
            raise invalid(self, "ping_timeout", "must be longer than ping_interval")
        if self.reconnect_max < self.reconnect_initial:
            raise invalid(self, "reconnect_max", "must be at least reconnect_initial")
        if self.reconnect_attempts is not None:
            check_count(self, "reconnect_attempts", at_least=0)
        object.__setattr__(
            self,
            "slow_subscriber",
            SlowSubscriberMode(
                check_choice(
                    self, "slow_subscriber", [choice.value for choice in SlowSubscriberMode]
                )
            ),
        )
        check_count(self, "link_queue_depth", at_least=1, at_most=1 << 20)
        check_count(self, "reliable_link_depth", at_least=1, at_most=1 << 20)
        check_size(self, "max_frame_size", at_least=1024, at_most=MAX_FRAME_SIZE)
        check_count(self, "max_remote_adverts", at_least=1)
        check_count(self, "remembered_incarnations", at_least=1)
        check_count(self, "max_links_per_peer", at_least=1)
        check_rate(self, "control_rate")
        check_count(self, "control_burst", at_least=1)
        check_count(self, "max_connections", at_least=2)
        check_instance(self, "limits", ResourceLimits)
        check_count(self, "max_peers", at_least=16)
        check_instance(self, "connection_limits", ConnectionLimits)
        check_instance(self, "dial_limits", DialLimits)
        for name, kind in (
            ("dht", DhtConfig),
            ("gossip", GossipConfig),
            ("mdns", MdnsConfig),
            ("nat", NatConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise invalid(
                    self,
                    name,
                    f"must be a {kind.__name__} or None, not {value!r} "
                    f"(turn it on with {name}={kind.__name__}())",
                )
            check_instance(self, name, kind, optional=True)
