"""Address helpers: which addresses are worth dialling, and relay (``/p2p-circuit``) addresses.

"Public" here means routable on the internet.  The benchmarking range 198.18.0.0/15 (which
Python's :mod:`ipaddress` calls private) counts as public, since NAT labs use it as their
"internet"; RFC 1918, carrier-grade NAT, loopback, link-local and unspecified addresses do not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from multiaddr import Multiaddr

__all__ = [
    "circuit_addr",
    "circuit_peer",
    "host_ip",
    "is_circuit",
    "is_public",
    "peer_addr_problem",
    "same_private_network",
    "tcp_port",
    "without_peer",
]

_BENCHMARKING = ipaddress.ip_network("198.18.0.0/15")
_UNROUTABLE_V4 = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)


def _names(addr: Multiaddr) -> list[str]:
    return [proto.name for proto in addr.protocols()]


def is_circuit(addr: Multiaddr | str) -> bool:
    """True for a relayed address (one with ``/p2p-circuit`` in it)."""
    return "p2p-circuit" in _names(Multiaddr(str(addr)))


def host_ip(addr: Multiaddr | str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address an ``/ip4`` or ``/ip6`` multiaddr starts with, else None."""
    maddr = Multiaddr(str(addr))
    names = _names(maddr)
    if not names or names[0] not in ("ip4", "ip6") or "p2p-circuit" in names:
        return None
    return ipaddress.ip_address(str(maddr.value_for_protocol(names[0])))


def tcp_port(addr: Multiaddr | str) -> int | None:
    """The TCP port of a multiaddr, else None."""
    maddr = Multiaddr(str(addr))
    if "tcp" not in _names(maddr):
        return None
    return int(str(maddr.value_for_protocol("tcp")))


def is_public(addr: Multiaddr | str) -> bool:
    """True when ``addr`` is a direct address routable on the internet (see the module doc)."""
    ip = host_ip(addr)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _BENCHMARKING:
            return True
        return not any(ip in net for net in _UNROUTABLE_V4)
    return ip.is_global


def same_private_network(addr: Multiaddr | str, ours: Iterable[Multiaddr | str]) -> bool:
    """True when private ``addr`` shares a /24 (IPv4) or /64 (IPv6) with one of ``ours``."""
    ip = host_ip(addr)
    if ip is None:
        return False
    prefix = 24 if isinstance(ip, ipaddress.IPv4Address) else 64
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    for own in ours:
        own_ip = host_ip(own)
        if own_ip is not None and not own_ip.is_unspecified and own_ip in net:
            return True
    return False


def without_peer(addr: Multiaddr | str) -> Multiaddr:
    """``addr`` without a trailing ``/p2p/<id>``."""
    maddr = Multiaddr(str(addr))
    names = _names(maddr)
    if names and names[-1] == "p2p":
        text = str(maddr)
        return Multiaddr(text[: text.rindex("/p2p/")])
    return maddr


def circuit_addr(relay_addr: Multiaddr | str, relay_id: str) -> Multiaddr:
    """Our address through a relay: ``<relay addr>/p2p/<relay>/p2p-circuit`` (no own id)."""
    return Multiaddr(f"{without_peer(relay_addr)}/p2p/{relay_id}/p2p-circuit")


def circuit_peer(addr: Multiaddr | str) -> tuple[str, str] | None:
    """``(relay id, destination id)`` of ``…/p2p/R/p2p-circuit/p2p/D``, else None."""
    text = str(addr)
    head, sep, dest = text.partition("/p2p-circuit/p2p/")
    if not sep or "/" in dest or "/p2p/" not in head:
        return None
    return head.rsplit("/p2p/", 1)[1], dest


def peer_addr_problem(addr: object) -> str | None:
    """Why ``addr`` is not a peer's dial address (``<transport address>/p2p/<peer id>``), or
    None when it is one.  Relayed addresses (``…/p2p-circuit/p2p/<peer id>``) are dial
    addresses too."""
    example = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW… (as `dndm node` prints it)"
    if not isinstance(addr, str):
        return f"a peer address is a string, not {type(addr).__name__}"
    try:
        maddr = Multiaddr(addr)
    except Exception as exc:  # multiaddr raises several unrelated types for bad text
        return f"{addr!r} is not a multiaddr ({exc}); a peer address looks like {example}"
    names = [proto.name for proto in maddr.protocols()]
    if not names or names[-1] != "p2p":
        return f"{addr!r} does not name the peer: add /p2p/<peer id>, as in {example}"
    if len(names) == 1:
        return f"{addr!r} names a peer but no address to reach it at, as in {example}"
    return None
