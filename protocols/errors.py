"""The one exception hierarchy of dndm-p2p (re-exported by :mod:`dndm_p2p`).

Every error the library raises is a :class:`DndmError`.  Each one is also either a
:class:`TransientError` (the same call may succeed later: nobody is listening yet, a queue is
full, a peer is unreachable) or a :class:`PermanentError` (retrying the same call can never
succeed: a malformed route, a type mismatch, a closed handle).  Applications that retry
catch ``TransientError``; everything else is a bug or bad input to report.

Where a standard exception says the same thing, our class derives from it as well
(``RouteError`` is a ``ValueError``, ``TypeMismatch`` a ``TypeError``), so code that already
catches the builtin keeps working.
"""

from __future__ import annotations

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


class DndmError(Exception):
    """Root of every error raised by dndm-p2p."""

    #: True when retrying the same operation later may succeed.
    transient: bool = False


class TransientError(DndmError):
    """The operation failed for now; the same call may succeed later."""

    transient = True


class PermanentError(DndmError):
    """The operation can never succeed as asked; retrying it is pointless."""

    transient = False


class RouteError(PermanentError, ValueError):
    """A route, hashed route or interest pattern is malformed or inconsistent."""


class TypeMismatch(PermanentError, TypeError):
    """A message's type does not match the type its route was declared with."""


class Closed(PermanentError):
    """The handle, router or node was closed; it can no longer be used."""


class ConfigError(PermanentError, ValueError):
    """An option or configuration value is invalid."""


class NoInterest(TransientError):
    """A message was sent on a route that nobody is subscribed to.

    Raised only by intents published with ``no_interest="raise"``; by default such
    messages are dropped silently and counted in ``Intent.stats``.
    """


class WouldBlock(TransientError):
    """A non-blocking call could not complete at once.

    ``receive_nowait`` raises it on an empty queue; ``send_nowait`` raises it when a
    subscriber with the ``block`` overflow policy has no room (and then no subscriber
    received the message: fan-out is all or nothing).
    """


class Timeout(TransientError):
    """An operation did not complete within its time limit (a call got no reply in time)."""


class Unavailable(TransientError):
    """A peer, connection or service could not be reached right now."""


class ConnectionLost(Unavailable):
    """An established connection or stream to a peer broke."""


class ProtocolError(PermanentError):
    """A peer sent something that breaks the wire protocol (malformed or oversize frame,
    unknown route, wrong type, unsupported version)."""


class FrameTooLarge(ProtocolError):
    """A frame's declared length exceeds the limit; nothing was allocated for it."""


class MalformedFrame(ProtocolError):
    """A frame could not be decoded: a bad length prefix, truncated, or not valid protobuf."""


class VersionMismatch(ProtocolError):
    """The peer speaks a protocol version this node does not support."""


class UnknownRoute(ProtocolError):
    """A peer referred to a route or link this node does not have."""


class PermissionDenied(PermanentError):
    """The operation is not allowed for this peer or route."""


class CallbackError(PermanentError):
    """A subscriber callback raised; the original exception is ``__cause__``.

    The interest is closed when its callback fails, and this error is raised when the
    application leaves the interest's ``async with`` block (and on any later use).
    """
