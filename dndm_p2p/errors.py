"""The exception hierarchy, re-exported for applications.

The classes live in :mod:`protocols.errors`, the bottom layer, so that the wire code can raise
them without importing the library above it; applications import them from here or from
:mod:`dndm_p2p`.
"""

from protocols.errors import (
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

__all__ = [
    "CallbackError",
    "Closed",
    "ConfigError",
    "ConnectionLost",
    "DndmError",
    "FrameTooLarge",
    "MalformedFrame",
    "NoInterest",
    "PermanentError",
    "PermissionDenied",
    "ProtocolError",
    "RouteError",
    "Timeout",
    "TransientError",
    "TypeMismatch",
    "UnknownRoute",
    "Unavailable",
    "VersionMismatch",
    "WouldBlock",
]
