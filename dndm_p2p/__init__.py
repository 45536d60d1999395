"""dndm-p2p: Decentralized Named Data Messaging.

Publishers declare an :class:`Intent` on a route (``Type@path``), subscribers an :class:`Interest`,
and every matching pair is linked: in the same process with zero copies, and (with the node)
across processes and machines over libp2p.
"""

from .errors import (
    CallbackError,
    Closed,
    ConfigError,
    ConnectionLost,
    DndmError,
    FrameTooLarge,
    MalformedFrame,
    NoInterest,
    PermanentError,
    PermissionDenied,
    ProtocolError,
    RouteError,
    Timeout,
    TransientError,
    TypeMismatch,
    Unavailable,
    UnknownRoute,
    VersionMismatch,
    WouldBlock,
)
from .intent import Intent, IntentStats
from .interest import Interest, InterestStats
from .links import LinkEvent, LinkEventKind, LinkInfo
from .pattern import Pattern
from .qos import Overflow, QoS
from .route import HashedRoute, PlainRoute, Route, parse_route
from .router import RouteInfo, Router

__version__ = "0.1.0"

__all__ = [
    "CallbackError",
    "Closed",
    "ConfigError",
    "ConnectionLost",
    "DndmError",
    "FrameTooLarge",
    "HashedRoute",
    "Intent",
    "IntentStats",
    "Interest",
    "InterestStats",
    "LinkEvent",
    "LinkEventKind",
    "LinkInfo",
    "MalformedFrame",
    "NoInterest",
    "Overflow",
    "Pattern",
    "PermanentError",
    "PermissionDenied",
    "PlainRoute",
    "ProtocolError",
    "QoS",
    "Route",
    "RouteError",
    "RouteInfo",
    "Router",
    "Timeout",
    "TransientError",
    "TypeMismatch",
    "UnknownRoute",
    "Unavailable",
    "VersionMismatch",
    "WouldBlock",
    "__version__",
    "parse_route",
]
