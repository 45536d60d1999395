"""NAT traversal for DNDM nodes: reachability, circuit relays, hole punching, UPnP.

Imports only :mod:`protocols` and py-libp2p; :mod:`dndm_p2p` wires it into the node.  Importing
this package (or :mod:`nat.config`) loads no py-libp2p module: the names below that need it are
served lazily.

* :mod:`nat.reachability` — AutoNAT with real dial-backs: public, private or unknown.
* :mod:`nat.relay` — serving as a circuit relay v2 relay; reservations on relays (renewed,
  moved on failure); dialling ``/p2p-circuit`` addresses.
* :mod:`nat.holepunch` — DCUtR upgrade of relayed connections, then off the relay.
* :mod:`nat.upnp` — UPnP port mapping (off by default, removed at shutdown).
* :mod:`nat.service` — all of it together (:class:`NatService`); :mod:`nat.metrics` its figures.
"""

from typing import TYPE_CHECKING, Any

from nat.config import NatConfig
from nat.metrics import NatMetrics

if TYPE_CHECKING:
    from nat.reachability import PRIVATE, PUBLIC, UNKNOWN
    from nat.service import NatEvent, NatService

_LAZY = {
    "PRIVATE": "nat.reachability",
    "PUBLIC": "nat.reachability",
    "UNKNOWN": "nat.reachability",
    "NatEvent": "nat.service",
    "NatService": "nat.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nat' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["PRIVATE", "PUBLIC", "UNKNOWN", "NatConfig", "NatEvent", "NatMetrics", "NatService"]
