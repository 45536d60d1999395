"""Node configuration: one validated, immutable object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dndm_p2p.core.qos import QoS
from dndm_p2p.errors import ConfigError
from nat.config import NatConfig
from protocols.ids import MAX_FRAME_SIZE

__all__ = ["NodeConfig"]


@dataclass(frozen=True)
class NodeConfig:
    """Everything a :class:`~dndm_p2p.node.Node` can be told.

    The defaults give a working node on loopback with a fresh identity: no configuration needed.
    Times are in seconds.
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
    #: Most connections the host keeps open (a bootstrap server wants more).
    max_connections: int = 300

    # -- discovery ---------------------------------------------------------------------------
    #: Bootstrap nodes (``/ip4/…/tcp/…/p2p/<id>``): connected at start and used to seed the DHT
    #: routing table.  Unlike :attr:`peers`, they are not linked with unless routes match.
    bootstrap: tuple[str, ...] = ()
    #: Find peers through the Kademlia DHT (provider records per route).
    dht: bool = False
    #: Find peers through signed GossipSub adverts (one topic per namespace).
    gossip: bool = False
    #: Run as a well-known entry point: a DHT server that relays every advert topic, with
    #: connection limits fit for many peers.
    bootstrap_server: bool = False
    #: Find peers on the LAN with mDNS, on these interface addresses only.
    mdns: bool = False
    mdns_interfaces: tuple[str, ...] = ("127.0.0.1",)
    #: How many leading path segments name a route's advert namespace (its GossipSub topic).
    namespace_depth: int = 1
    #: A file where the node keeps the addresses of peers it has met, across restarts.
    address_book: Path | None = None
    #: A Unix socket where ``dndm routes`` and ``dndm peers`` can query the running node.
    admin_socket: Path | None = None

    # -- NAT traversal -----------------------------------------------------------------------
    #: Reachability (AutoNAT), circuit relays (serving, reserving, dialling ``/p2p-circuit``
    #: addresses), hole punching and UPnP, as :class:`nat.NatConfig` sets them; ``None``: off.
    nat: NatConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.listen, str) or isinstance(self.peers, str):
            raise ConfigError("listen and peers are sequences of multiaddr strings")
        object.__setattr__(self, "listen", tuple(self.listen))
        object.__setattr__(self, "peers", tuple(self.peers))
        for name in ("bootstrap", "mdns_interfaces"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ConfigError(f"{name} is a sequence of strings, not one string")
            object.__setattr__(self, name, tuple(value))
        for name in ("key_file", "address_book", "admin_socket"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.nat is not None and not isinstance(self.nat, NatConfig):
            raise ConfigError(f"nat must be a NatConfig or None, not {type(self.nat).__name__}")
        if self.namespace_depth < 1:
            raise ConfigError("namespace_depth must be at least 1")
        if self.max_connections < 2:
            raise ConfigError("max_connections must be at least 2")
        for name in (
            "ping_interval",
            "ping_timeout",
            "handshake_timeout",
            "reconnect_initial",
            "reconnect_max",
            "reliable_grace",
            "message_ttl",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.ping_timeout <= self.ping_interval:
            raise ConfigError("ping_timeout must be longer than ping_interval")
        if self.reconnect_max < self.reconnect_initial:
            raise ConfigError("reconnect_max must be at least reconnect_initial")
        if not 1024 <= self.max_frame_size <= MAX_FRAME_SIZE:
            raise ConfigError(f"max_frame_size must be between 1024 and {MAX_FRAME_SIZE}")
        for name in ("max_remote_adverts", "max_links_per_peer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.reconnect_attempts is not None and self.reconnect_attempts < 0:
            raise ConfigError("reconnect_attempts must not be negative")
