"""Result frames: how errors travel between peers, in both directions, in one place.

An error is a ``Result`` with a code other than ``OK``.  Outgoing, each error class maps to one
code (:func:`code_for`); incoming, each code maps back to an error class
(:func:`error_for`), and an unknown code counts as ``ERROR`` (a newer peer may send codes this
one does not know).  ``nonce`` is the ``header.sequence`` of the frame being answered.
"""

from __future__ import annotations

from typing import TypeAlias

from dndm_p2p.errors import (
    DndmError,
    FrameTooLarge,
    LinkReset,
    MalformedFrame,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ResourceLimitExceeded,
    SlowSubscriber,
    TypeMismatch,
    UnknownRoute,
    VersionMismatch,
)
from protocols.v1 import control_pb2, result_pb2

__all__ = ["Code", "code_for", "code_name", "control_result", "data_result", "error_for"]

Code: TypeAlias = result_pb2.Result.Code.ValueType
_R = result_pb2.Result

_CODES: tuple[tuple[type[DndmError], Code], ...] = (
    (VersionMismatch, _R.VERSION_MISMATCH),
    (UnknownRoute, _R.UNKNOWN_ROUTE),
    (FrameTooLarge, _R.FRAME_TOO_LARGE),
    (MalformedFrame, _R.MALFORMED),
    (TypeMismatch, _R.TYPE_MISMATCH),
    (PermissionDenied, _R.PERMISSION_DENIED),
    (SlowSubscriber, _R.SLOW_SUBSCRIBER),
    (LinkReset, _R.RESUME_REFUSED),
    (ResourceLimitExceeded, _R.RESOURCE_LIMIT_EXCEEDED),
    (RateLimited, _R.RATE_LIMITED),
    # Any other protocol violation: the frame was well formed but broke the protocol's rules.
    (ProtocolError, _R.MALFORMED),
)


def code_for(error: DndmError) -> Code:
    """The Result code that reports ``error`` to a peer."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return _R.TRANSIENT if error.transient else _R.ERROR


def code_name(code: int) -> str:
    """The name of a Result code; ``ERROR(<n>)`` for a code this version does not know."""
    try:
        return _R.Code.Name(code)  # type: ignore[arg-type]
    except ValueError:
        return f"ERROR({code})"


def error_for(result: result_pb2.Result, context: str) -> DndmError:
    """The error a peer's Result reports, as our exception class."""
    text = f"{context}: {code_name(result.code)} {result.description}".rstrip()
    for kind, code in _CODES:
        if result.code == code:
            return kind(text)
    return ProtocolError(text)


def data_result(
    error_or_code: DndmError | Code, description: str = "", *, link_id: int = 0, nonce: int = 0
) -> bytes:
    """A serialized DataFrame carrying a Result: how a link is refused or closed."""
    if isinstance(error_or_code, DndmError):
        code, description = code_for(error_or_code), str(error_or_code)
        transient = error_or_code.transient
    else:
        code, transient = error_or_code, False
    frame = control_pb2.DataFrame(
        result=_R(
            code=code, description=description, link_id=link_id, nonce=nonce, transient=transient
        )
    )
    return frame.SerializeToString()


def control_result(error: DndmError, nonce: int = 0) -> control_pb2.ControlFrame:
    """A control frame carrying a Result that reports ``error`` to the peer."""
    return control_pb2.ControlFrame(
        result=_R(
            code=code_for(error), description=str(error), transient=error.transient, nonce=nonce
        )
    )
