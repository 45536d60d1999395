"""Discovery settings: the gossip and mDNS configs a node nests (times in seconds).

Importing this module loads no py-libp2p module, so :class:`dndm_p2p.config.NodeConfig` can
name these classes; :mod:`dndm_p2p.discovery.gossip` and :mod:`dndm_p2p.discovery.mdns` use
them.  Every field is checked on construction (:class:`~dndm_p2p.errors.ConfigError` naming
the field).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from dndm_p2p.errors import ConfigError
from protocols.validation import (
    check_count,
    check_flag,
    check_rate,
    check_seconds,
    check_strings,
    invalid,
)

__all__ = ["DialLimits", "GossipConfig", "MdnsConfig", "interface_addresses"]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """How adverts are gossiped.

    :param heartbeat: GossipSub heartbeat, seconds (mesh upkeep, gossip); also how often a
        ``relay_all`` node looks for new topics.
    :param min_interval: at most one publish per namespace per this many seconds; adverts
        announced in between are sent together.
    :param advert_ttl: receivers forget an advert not refreshed within this many seconds.
    :param refresh: live adverts are re-announced this often (less than ``advert_ttl``).
    :param relay_all: join every advert topic a connected peer subscribes to, so this node
        relays them (for bootstrap servers).
    :param namespace_depth: how many leading path segments of a route name its advert
        namespace (its GossipSub topic).
    """

    heartbeat: float = 1.0
    min_interval: float = 0.25
    advert_ttl: float = 60.0
    refresh: float = 20.0
    relay_all: bool = False
    namespace_depth: int = 1

    def __post_init__(self) -> None:
        check_seconds(self, "heartbeat", at_least=0.01)
        check_seconds(self, "min_interval", at_least=0)
        check_seconds(self, "advert_ttl", at_least=0.01)
        check_seconds(self, "refresh", at_least=0.01)
        if self.refresh >= self.advert_ttl:
            raise invalid(
                self,
                "refresh",
                f"must be shorter than advert_ttl ({self.advert_ttl:g} s), or adverts expire "
                f"between refreshes; not {self.refresh:g} s",
            )
        check_flag(self, "relay_all")
        check_count(self, "namespace_depth", at_least=1)


@dataclass(frozen=True, slots=True)
class DialLimits:
    """What discovery may dial, and how often, whoever names the address.

    Discovery dials only addresses a peer named for itself: a gossip advert's (signed by the
    advertiser), a DHT provider's signed peer record or node record, an mDNS announcement.
    Dials are rate-limited per source (an advertiser, a provider) and an address that failed
    is left alone for a while, whoever names it again.

    :param source_rate: dial attempts per second allowed to one source, on average.
    :param source_burst: dial attempts one source may cause at once.
    :param failed_addr_backoff: seconds an address that could not be connected to is not
        dialled again by discovery.
    :param max_addrs_per_peer: most addresses tried for one discovered peer.
    """

    source_rate: float = 0.2
    source_burst: int = 4
    failed_addr_backoff: float = 60.0
    max_addrs_per_peer: int = 4

    def __post_init__(self) -> None:
        check_rate(self, "source_rate")
        check_count(self, "source_burst", at_least=1)
        check_seconds(self, "failed_addr_backoff", at_least=0)
        check_count(self, "max_addrs_per_peer", at_least=1)


@dataclass(frozen=True, slots=True)
class MdnsConfig:
    """mDNS discovery on the LAN, bound to these interface addresses only.

    :param interfaces: IP addresses of this machine's interfaces (``"127.0.0.1"``,
        ``"192.168.1.5"``); queries and announcements leave through those and no other.
    """

    interfaces: tuple[str, ...] = ("127.0.0.1",)

    def __post_init__(self) -> None:
        check_strings(self, "interfaces")
        try:
            interface_addresses(self.interfaces)
        except ConfigError as exc:
            raise invalid(self, "interfaces", str(exc)) from None


def interface_addresses(
    interfaces: Iterable[str],
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """The distinct IP addresses ``interfaces`` names, in order.

    :raises ConfigError: ``interfaces`` is one string, is empty, or holds something that is
        not an IP address.
    """
    if isinstance(interfaces, str):
        raise ConfigError("mDNS interfaces are a sequence of IP addresses, not one string")
    parsed = []
    for text in interfaces:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            raise ConfigError(
                f"mDNS interface {text!r} is not an IP address (give the address of the "
                "interface, e.g. 127.0.0.1)"
            ) from None
    if not parsed:
        raise ConfigError("mDNS needs at least one interface address")
    return tuple(dict.fromkeys(parsed))
