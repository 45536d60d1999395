"""NAT traversal for DNDM nodes: reachability, circuit relays, hole punching, UPnP.

Imports only :mod:`protocols` and py-libp2p; :mod:`dndm_p2p` wires it into the node.

* :mod:`nat.reachability` — AutoNAT with real dial-backs: public, private or unknown.
* :mod:`nat.relay` — serving as a circuit relay v2 relay; reservations on relays (renewed,
  moved on failure); dialling ``/p2p-circuit`` addresses.
* :mod:`nat.holepunch` — DCUtR upgrade of relayed connections, then off the relay.
* :mod:`nat.upnp` — UPnP port mapping (off by default, removed at shutdown).
* :mod:`nat.service` — all of it together (:class:`NatService`); :mod:`nat.metrics` its figures.
* :mod:`nat.fixes` — the py-libp2p defects worked around, in one place.
"""

from .config import NatConfig
from .metrics import NatMetrics
from .reachability import PRIVATE, PUBLIC, UNKNOWN
from .service import NatEvent, NatService

__all__ = ["PRIVATE", "PUBLIC", "UNKNOWN", "NatConfig", "NatEvent", "NatMetrics", "NatService"]
