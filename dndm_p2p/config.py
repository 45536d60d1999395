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
from dndm_p2p.core.qos import QoS
from dndm_p2p.discovery.config import DialLimits, GossipConfig, MdnsConfig
from dndm_p2p.host.limits import ConnectionLimits
from nat.config import NatConfig
from protocols.ids import MAX_FRAME_SIZE
from protocols.validation import (
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
]

_SECONDS = (
    "ping_interval",
    "ping_timeout",
    "handshake_timeout",
    "reconnect_initial",
    "reconnect_max",
    "reliable_grace",
    "message_ttl",
)


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
    #: Limits that protect the node from a hostile or broken peer.
    max_frame_size: int = MAX_FRAME_SIZE
    max_remote_adverts: int = 10_000
    max_links_per_peer: int = 1024
    #: Control requests (advert batches, pings) served per second to one peer, on average,
    #: and how many it may send at once above that; beyond, they are refused (RATE_LIMITED).
    control_rate: float = 50.0
    control_burst: int = 200
    #: Most connections the host keeps open (a bootstrap server wants more).
    max_connections: int = 300
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
        check_size(self, "max_frame_size", at_least=1024, at_most=MAX_FRAME_SIZE)
        check_count(self, "max_remote_adverts", at_least=1)
        check_count(self, "max_links_per_peer", at_least=1)
        check_rate(self, "control_rate")
        check_count(self, "control_burst", at_least=1)
        check_count(self, "max_connections", at_least=2)
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
