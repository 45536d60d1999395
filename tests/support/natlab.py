"""A NAT lab in network namespaces, for the NAT traversal tests (``tests/nat/test_nat_lab.py``).

::

        <p>-relay 198.18.0.2    <p>-pub1 198.18.10.2
                  \\              /
                   <p>-inet (router; 198.18.K.1 on each link; RFC 1918 unreachable)
                  /              \\
    <p>-nat1 WAN 198.18.1.2    <p>-nat2 WAN 198.18.2.2
         LAN 10.1.0.1/24            LAN 10.2.0.1/24
             |                          |
    <p>-a    10.1.0.2           <p>-b   10.2.0.2

Every name starts with a prefix unique to the lab (``n<6 hex>``), so labs never collide with
each other or with anything else.  No link ever touches the root namespace: addresses exist
only inside the lab.  :meth:`NatLab.down` kills what runs in the lab's namespaces and deletes
them (with their veth pairs and nftables rules); it is safe to call after a partial ``up``.

NAT types (RFC 4787 mapping / filtering), set with nftables on the NAT router, whose WAN
silently drops anything unsolicited (a real CPE neither resets nor answers):

* ``cone``: masquerade, port-preserving (endpoint-independent mapping in practice),
  address-and-port-dependent filtering ("port-restricted cone", Linux's default);
* ``symmetric``: masquerade with random ports (a new mapping per destination);
* ``addr``: port-preserving, inbound allowed from any port of an IP the host sent to
  ("address-restricted cone");
* ``full``: port-preserving, every inbound port forwarded to the LAN host ("full cone");
* ``forward``: cone plus a static forward of port 4001 (a manual or UPnP mapping).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["LAN_HOST", "PORT", "PUBLIC_IP", "NatLab", "lab_unavailable"]

#: The port every lab node listens on.
PORT = 4001
#: Public hosts and their address; LAN hosts behind nat1 and nat2.
PUBLIC_IP = {"relay": "198.18.0.2", "pub1": "198.18.10.2", "pub2": "198.18.11.2"}
LAN_HOST = {"a": ("nat1", "10.1.0.2"), "b": ("nat2", "10.2.0.2")}
NAT_WAN = {"nat1": "198.18.1.2", "nat2": "198.18.2.2"}
NAT_TYPES = ("cone", "symmetric", "addr", "full", "forward")

_FILTER = """
table ip filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
    iifname "lan" accept
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "lan" oifname "wan" accept
    iifname "wan" ct status dnat accept
  }
}
"""
_MASQ = 'chain post { type nat hook postrouting priority 100; oifname "wan" masquerade; }'
_INBOUND = "meta l4proto { tcp, udp }"


def _nat_rules(kind: str, host: str) -> str:
    if kind == "symmetric":
        chains = [
            "chain post { type nat hook postrouting priority 100; "
            'oifname "wan" masquerade random,fully-random; }'
        ]
    elif kind == "cone":
        chains = [_MASQ]
    elif kind == "full":
        chains = [
            _MASQ,
            "chain pre { type nat hook prerouting priority -100; "
            f'iifname "wan" {_INBOUND} dnat to {host}; }}',
        ]
    elif kind == "addr":
        chains = [
            _MASQ,
            "set contacted { type ipv4_addr; flags dynamic,timeout; timeout 120s; }",
            "chain track { type filter hook forward priority -10; "
            'iifname "lan" oifname "wan" update @contacted { ip daddr }; }',
            "chain pre { type nat hook prerouting priority -100; "
            f'iifname "wan" ip saddr @contacted {_INBOUND} dnat to {host}; }}',
        ]
    elif kind == "forward":
        chains = [
            _MASQ,
            "chain pre { type nat hook prerouting priority -100; "
            f'iifname "wan" tcp dport {PORT} dnat to {host}:{PORT}; }}',
        ]
    else:
        raise ValueError(f"unknown NAT type {kind!r}; one of {NAT_TYPES}")
    body = "\n".join(f"  {chain}" for chain in chains)
    return f"flush ruleset\n{_FILTER}\ntable ip nat {{\n{body}\n}}\n"


def _run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, timeout=30)


def lab_unavailable() -> str | None:
    """Why this machine cannot build a NAT lab, or None when it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 nftables)"
    probe = f"n{secrets.token_hex(3)}-probe"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, "nft", "-f", "-", stdin=_nat_rules("cone", "10.0.0.2"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"cannot create a network namespace with NAT rules here: {detail.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


class NatLab:
    """One lab: namespaces, veth pairs and NAT rules under a unique prefix."""

    def __init__(self) -> None:
        self.prefix = f"n{secrets.token_hex(3)}"
        self.created: list[str] = []

    def ns(self, name: str) -> str:
        """The full namespace name of lab box ``name`` (``relay``, ``a``, ``nat1``...)."""
        return f"{self.prefix}-{name}"

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside box ``name``."""
        return ["ip", "netns", "exec", self.ns(name), *argv]

    def _x(self, name: str, *argv: str, stdin: str | None = None) -> None:
        _run(*self.exec_argv(name, argv), stdin=stdin)

    def _box(self, name: str) -> None:
        ns = self.ns(name)
        _run("ip", "netns", "add", ns)
        self.created.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        self._x(name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        self._x(name, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
        self._x(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")

    def _link(self, a: str, a_if: str, a_ip: str, b: str, b_if: str, b_ip: str) -> None:
        ns_a, ns_b = self.ns(a), self.ns(b)
        _run("ip", "link", "add", a_if, "netns", ns_a, "type", "veth", "peer", "name", b_if,
             "netns", ns_b)  # fmt: skip
        for ns, ifname, ip in ((ns_a, a_if, a_ip), (ns_b, b_if, b_ip)):
            _run("ip", "-n", ns, "addr", "add", ip, "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")

    def up(
        self, nat1: str = "cone", nat2: str = "cone", publics: Sequence[str] = ("relay",)
    ) -> None:
        """Build the lab (call :meth:`down` afterwards, also when this fails)."""
        self._box("inet")
        self._x("inet", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for bogon in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"):
            self._x("inet", "ip", "route", "add", "unreachable", bogon)
        for name in publics:
            ip = PUBLIC_IP[name]
            gateway = ip.rsplit(".", 1)[0] + ".1"
            self._box(name)
            self._link("inet", f"to-{name}", f"{gateway}/24", name, "wan", f"{ip}/24")
            self._x(name, "ip", "route", "add", "default", "via", gateway)
        for host, kind in (("a", nat1), ("b", nat2)):
            router, lan_ip = LAN_HOST[host]
            wan = NAT_WAN[router]
            lan_gw = lan_ip.rsplit(".", 1)[0] + ".1"
            wan_gw = wan.rsplit(".", 1)[0] + ".1"
            self._box(router)
            self._box(host)
            self._link("inet", f"to-{router}", f"{wan_gw}/24", router, "wan", f"{wan}/24")
            self._link(router, "lan", f"{lan_gw}/24", host, "eth0", f"{lan_ip}/24")
            self._x(router, "ip", "route", "add", "default", "via", wan_gw)
            self._x(host, "ip", "route", "add", "default", "via", lan_gw)
            self._x(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.set_nat(router, kind)

    def set_nat(self, router: str, kind: str) -> None:
        """Give NAT router ``nat1`` or ``nat2`` behaviour ``kind`` (atomically)."""
        host = next(ip for r, ip in LAN_HOST.values() if r == router)
        self._x(router, "nft", "-f", "-", stdin=_nat_rules(kind, host))
        if shutil.which("conntrack"):
            subprocess.run(self.exec_argv(router, ["conntrack", "-F"]), capture_output=True,
                           timeout=30)  # fmt: skip

    def down(self) -> None:
        """Kill every process in the lab's namespaces and delete them (idempotent)."""
        for ns in reversed(self.created):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=30).stdout.split()  # fmt: skip
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    continue
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created.clear()

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (for the tests' cleanup check)."""
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                 timeout=30).stdout  # fmt: skip
        return [line.split()[0] for line in listing.splitlines()
                if line.startswith(f"{self.prefix}-")]  # fmt: skip
