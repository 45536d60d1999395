"""dndm-p2p: Decentralized Named Data Messaging.

Publishers declare an :class:`Intent` on a route (``Type@path``), subscribers an :class:`Interest`,
and every matching pair is linked: in the same process with zero copies, and (with the node)
across processes and machines over libp2p.
"""

from typing import TYPE_CHECKING, Any

from . import errors as _errors
from .config import NodeConfig
from .errors import *  # noqa: F403 - the exception hierarchy, listed in errors.__all__
from .intent import Intent, IntentStats
from .interest import Interest, InterestStats
from .links import LinkEvent, LinkEventKind, LinkInfo
from .pattern import Pattern
from .qos import Overflow, QoS
from .route import HashedRoute, PlainRoute, Route, parse_route
from .router import RouteInfo, Router
from .rpc import Caller, Service

if TYPE_CHECKING:
    from .node import LinkStats, Node, NodeEvent, PeerInfo

#: Names served lazily: the node imports py-libp2p (half a second and ~80 MB), which programs
#: that only use the in-process router should not pay for.
_NODE_NAMES = ("LinkStats", "Node", "NodeEvent", "PeerInfo")


def __getattr__(name: str) -> Any:
    if name in _NODE_NAMES:
        from . import node

        return getattr(node, name)
    raise AttributeError(f"module 'dndm_p2p' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Caller",
    "HashedRoute",
    "Intent",
    "IntentStats",
    "Interest",
    "InterestStats",
    "LinkEvent",
    "LinkEventKind",
    "LinkInfo",
    "LinkStats",
    "Node",
    "NodeConfig",
    "NodeEvent",
    "Overflow",
    "Pattern",
    "PeerInfo",
    "PlainRoute",
    "QoS",
    "Route",
    "RouteInfo",
    "Router",
    "Service",
    "__version__",
    "parse_route",
    *_errors.__all__,
]
