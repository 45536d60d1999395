"""The one exception hierarchy of dndm-p2p (re-exported by :mod:`dndm_p2p`).

Every error the library raises is a :class:`DndmError`.  Each one is also either a
:class:`TransientError` (the same call may succeed later: nobody is listening yet, a queue is
full, a peer is unreachable) or a :class:`PermanentError` (retrying the same call can never
succeed: a malformed route, a type mismatch, a closed handle).  Applications that retry
catch ``TransientError``; everything else is a bug or bad input to report.

Where a standard exception says the same thing, our class derives from it as well, so code that
already catches the builtin keeps working (builtin bases in brackets)::

    DndmError
    ├── TransientError                 retrying later may succeed
    │   ├── NoInterest                 nobody subscribed (only with no_interest="raise")
    │   ├── WouldBlock                 [BlockingIOError] a non-blocking call could not complete now
    │   ├── Timeout                    [TimeoutError] no result within the time limit
    │   ├── ResourceLimitExceeded      [OSError] a peer's or the node's budget is used up
    │   ├── RateLimited                a peer made requests faster than its rate limit
    │   └── Unavailable                [ConnectionError] a peer or service is unreachable
    │       └── ConnectionLost         an established connection or stream broke
    │   ├── SlowSubscriber             a publisher gave up on a subscriber that lagged
    │   └── LinkReset                  a reliable link could not resume: it starts afresh
    └── PermanentError                 retrying the same call cannot succeed
        ├── RouteError                 [ValueError] malformed route, hashed route or pattern
        ├── TypeMismatch               [TypeError] message class does not match the route
        ├── Closed                     [RuntimeError] the handle, router or node is closed
        ├── ConfigError                [ValueError] bad option or configuration value
        ├── ProtocolError              a peer broke the wire protocol
        │   ├── FrameTooLarge          a frame above the size limit
        │   ├── MalformedFrame         a frame that does not decode
        │   ├── VersionMismatch        an unsupported protocol version
        │   └── UnknownRoute           a route or link this node does not have
        ├── PermissionDenied           [PermissionError] not allowed for this peer or route
        ├── CallbackError              a subscriber callback raised (the cause is attached)
        └── RemoteError                a service failed a call (its exception's text and class)

``RemoteError`` is permanent, like ``CallbackError`` (its in-process counterpart): the service
ran the handler on this request and it failed, and running the same handler on the same
request again is expected to fail the same way.  It has no builtin base, because the remote
exception's class is not reconstructed (only its name travels, in ``kind``).

``Closed`` is a ``RuntimeError`` because using a closed handle is a call made in the wrong
state, not a bad argument: Python says the same of a closed event loop or executor
(``RuntimeError``).  The OS-error builtins (``BlockingIOError``, ``TimeoutError``,
``ConnectionError``, ``PermissionError``) are ``OSError`` subclasses; ours carry no ``errno``
and their ``str()`` is the message, as for every other class here.

``ResourceLimitExceeded`` is an ``OSError``, not a ``MemoryError``: it is a *refusal* made by
policy before anything is allocated, the kind of answer the OS gives when a budget is full
(``EMFILE``, ``ENOBUFS`` and ``EAGAIN`` come as ``OSError``), and the process is healthy.
``MemoryError`` says an allocation failed and the interpreter is in trouble; code that catches
it reacts to that, not to one peer being told no.  It is transient: once the peer's usage goes
down the same request may succeed.

Errors carry the facts a caller needs as attributes, all keyword-only and ``None`` when not
given: every error has ``peer`` (the base58 peer id concerned) and ``route`` (the route's
text); :class:`ConfigError` has ``field`` (``"NodeConfig.ping_interval"``), :class:`Timeout`
has ``timeout`` (seconds), :class:`RemoteError` has ``code`` (a ``dndm.v1.RpcError.Code``
number) and ``kind`` (the remote exception's class name), :class:`FrameTooLarge` has ``size``
and ``limit`` (bytes).
"""

from __future__ import annotations

__all__ = [
    "CallbackError",
    "Closed",
    "ConfigError",
    "ConnectionLost",
    "DndmError",
    "FrameTooLarge",
    "LinkReset",
    "MalformedFrame",
    "NoInterest",
    "PermanentError",
    "PermissionDenied",
    "RemoteError",
    "ProtocolError",
    "ResourceLimitExceeded",
    "RateLimited",
    "RouteError",
    "SlowSubscriber",
    "Timeout",
    "TransientError",
    "TypeMismatch",
    "UnknownRoute",
    "Unavailable",
    "VersionMismatch",
    "WouldBlock",
]


class DndmError(Exception):
    """Root of every error raised by dndm-p2p.

    :param peer: the base58 id of the peer the error concerns, if one does.
    :param route: the text of the route the error concerns, if one does.
    """

    #: True when retrying the same operation later may succeed.
    transient: bool = False

    def __init__(self, *args: object, peer: str | None = None, route: str | None = None) -> None:
        super().__init__(*args)
        self.peer = peer
        self.route = route

    def __str__(self) -> str:
        # The message, also for the OSError subclasses (whose own str() would read an errno).
        return BaseException.__str__(self)


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


class Closed(PermanentError, RuntimeError):
    """The handle, router or node was closed; it can no longer be used."""


class ConfigError(PermanentError, ValueError):
    """An option or configuration value is invalid.

    :param field: the qualified name of the bad field (``"NodeConfig.ping_interval"``), when
        the error is about one.
    """

    def __init__(
        self,
        *args: object,
        field: str | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.field = field


class NoInterest(TransientError):
    """A message was sent on a route that nobody is subscribed to.

    Raised only by intents published with ``no_interest="raise"``; by default such
    messages are dropped silently and counted in ``Intent.stats``.
    """


class WouldBlock(TransientError, BlockingIOError):
    """A non-blocking call could not complete at once.

    ``receive_nowait`` raises it on an empty queue; ``send_nowait`` raises it when a
    subscriber with the ``block`` overflow policy has no room (and then no subscriber
    received the message: fan-out is all or nothing).
    """


class Timeout(TransientError, TimeoutError):
    """An operation did not complete within its time limit (a call got no reply in time).

    :param timeout: the time limit, in seconds.
    """

    def __init__(
        self,
        *args: object,
        timeout: float | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.timeout = timeout


class ResourceLimitExceeded(TransientError, OSError):
    """A reservation was refused: it would take a budget of the resource manager past its limit.

    Nothing was allocated for the refused request.

    :param resource: what was asked for: ``"memory"`` (bytes), ``"streams"`` or ``"links"``.
    :param scope: whose budget is full: ``"peer"`` or ``"node"``.
    :param size: how much was asked for (bytes for memory, a count otherwise).
    :param limit: the budget's limit, in the same unit.
    :param use: what was asked for, finer than ``resource`` (``"control_queue"``, ``"unacked"``,
        ``"partial_frames"``, ``"queue_slots"``, ...).
    """

    def __init__(
        self,
        *args: object,
        resource: str | None = None,
        scope: str | None = None,
        size: int | None = None,
        limit: int | None = None,
        use: str | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.resource = resource
        self.scope = scope
        self.size = size
        self.limit = limit
        self.use = use


class RateLimited(TransientError):
    """A request was refused because it came faster than a per-peer rate limit allows.

    :param limit: the limit's average rate, requests per second.
    """

    def __init__(
        self,
        *args: object,
        limit: float | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.limit = limit


class Unavailable(TransientError, ConnectionError):
    """A peer, connection or service could not be reached right now."""


class ConnectionLost(Unavailable):
    """An established connection or stream to a peer broke."""


class SlowSubscriber(TransientError):
    """A publisher gave up on a remote subscriber that did not keep up with its route: the
    link lagged past the publisher's deadline, or a reliable link could hold no more without
    losing a message.  The link's state is gone; a new link may be refused for a while."""


class LinkReset(TransientError):
    """A reliable link could not resume where it stopped (the far end restarted, or gave the
    link up): it starts afresh, and what was sent between the two links is lost."""


class ProtocolError(PermanentError):
    """A peer sent something that breaks the wire protocol (malformed or oversize frame,
    unknown route, wrong type, unsupported version)."""


class FrameTooLarge(ProtocolError):
    """A frame's declared length exceeds the limit; nothing was allocated for it.

    :param size: the frame's (declared or actual) length in bytes.
    :param limit: the largest length allowed, in bytes.
    """

    def __init__(
        self,
        *args: object,
        size: int | None = None,
        limit: int | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.size = size
        self.limit = limit


class MalformedFrame(ProtocolError):
    """A frame could not be decoded: a bad length prefix, truncated, or not valid protobuf."""


class VersionMismatch(ProtocolError):
    """The peer speaks a protocol version this node does not support."""


class UnknownRoute(ProtocolError):
    """A peer referred to a route or link this node does not have."""


class PermissionDenied(PermanentError, PermissionError):
    """The operation is not allowed for this peer or route."""


class CallbackError(PermanentError):
    """A subscriber callback raised; the original exception is ``__cause__``.

    The interest is closed when its callback fails, and this error is raised when the
    application leaves the interest's ``async with`` block (and on any later use).
    """


class RemoteError(PermanentError):
    """A service answered a call with an error: its handler raised, or refused the request.

    ``str()`` is the remote exception's text.

    :param code: the ``dndm.v1.RpcError.Code`` number (1 = the handler raised).
    :param kind: the class name of the exception at the service (``"ValueError"``), when known.
    """

    def __init__(
        self,
        *args: object,
        code: int | None = None,
        kind: str | None = None,
        peer: str | None = None,
        route: str | None = None,
    ) -> None:
        super().__init__(*args, peer=peer, route=route)
        self.code = code
        self.kind = kind
