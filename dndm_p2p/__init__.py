"""dndm-p2p: Decentralized Named Data Messaging.

Publishers declare an :class:`Intent` on a route (``Type@path``), subscribers an :class:`Interest`,
and every matching pair is linked: in the same process with zero copies, and (with the node)
across processes and machines over libp2p.
"""

from typing import TYPE_CHECKING, Any

from dndm_p2p import errors as _errors
from dndm_p2p.config import (
    DhtConfig,
    GossipConfig,
    MdnsConfig,
    NatConfig,
    NodeConfig,
    ResourceLimits,
)
from dndm_p2p.core.intent import Intent, IntentStats
from dndm_p2p.core.interest import Interest, InterestStats
from dndm_p2p.core.links import LinkEvent, LinkEventKind, LinkInfo
from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.qos import Overflow, QoS
from dndm_p2p.core.route import HashedRoute, PlainRoute, Route, parse_route
from dndm_p2p.core.router import RouteInfo, Router
from dndm_p2p.core.rpc import Caller, ReplyStream, RpcConfig, Service
from dndm_p2p.errors import *  # noqa: F403 - the exception hierarchy, listed in errors.__all__

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node
    from dndm_p2p.node.types import KnownRoute, LinkStats, NodeEvent, PeerInfo

#: Names served lazily: the node imports py-libp2p (half a second and ~80 MB), which programs
#: that only use the in-process router should not pay for.
_NODE_NAMES = ("KnownRoute", "LinkStats", "Node", "NodeEvent", "PeerInfo")


def __getattr__(name: str) -> Any:
    if name in _NODE_NAMES:
        from dndm_p2p import node

        return getattr(node, name)
    raise AttributeError(f"module 'dndm_p2p' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Caller",
    "DhtConfig",
    "GossipConfig",
    "HashedRoute",
    "Intent",
    "IntentStats",
    "Interest",
    "InterestStats",
    "KnownRoute",
    "LinkEvent",
    "LinkEventKind",
    "LinkInfo",
    "LinkStats",
    "MdnsConfig",
    "NatConfig",
    "Node",
    "NodeConfig",
    "NodeEvent",
    "Overflow",
    "Pattern",
    "PeerInfo",
    "PlainRoute",
    "QoS",
    "ReplyStream",
    "ResourceLimits",
    "Route",
    "RouteInfo",
    "Router",
    "RpcConfig",
    "Service",
    "__version__",
    "parse_route",
    *_errors.__all__,
]
