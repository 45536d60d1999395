"""A yamux muxer that enforces its receive windows: a peer cannot make it buffer past them.

py-libp2p 0.8.1's ``Yamux.handle_incoming`` appends every DATA frame to the stream's buffer and
only logs when the frame exceeds the receive window it granted (it then sets the window to 0 and
keeps the bytes).  A stream the application does not read (a stream it only writes, say) then
grows without bound at the peer's will.

:func:`windowed_yamux` applies :func:`enforce_receive_windows` to every yamux connection one
host makes: the buffers of its streams refuse a frame larger than what is left of the stream's
receive window.  The muxer's own error handling then drops the frame and marks the stream closed
for reading (a reader sees the end of the stream), and the refusal is counted in the muxer's
``window_violations``.  Every other ``Yamux`` of the process keeps py-libp2p's behaviour.  The
defect is listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libp2p.abc import IHost, IMuxedConn, ISecureConn
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import Yamux

__all__ = [
    "ReceiveWindowExceeded",
    "ReceiveWindows",
    "enforce_receive_windows",
    "is_windowed",
    "receive_windows",
    "windowed_yamux",
]


class ReceiveWindows:
    """One host's record of receive-window violations: a count, and who to tell (each
    listener is called with the offending peer's id and the size of the refused frame)."""

    def __init__(self) -> None:
        self.violations = 0
        self.listeners: list[Callable[[ID, int], None]] = []

    def violated(self, peer_id: ID, size: int) -> None:
        """Count a refused frame and tell the listeners (their errors are theirs)."""
        self.violations += 1
        for listener in list(self.listeners):
            listener(peer_id, size)


class ReceiveWindowExceeded(Exception):
    """A DATA frame larger than what is left of its stream's receive window."""


class _WindowedBuffer(bytearray):
    """A yamux stream's receive buffer that refuses bytes past the stream's receive window."""

    __slots__ = ("_muxer", "_stream_id")

    def __init__(self, muxer: Yamux, stream_id: int, initial: bytes = b"") -> None:
        super().__init__(initial)
        self._muxer = muxer
        self._stream_id = stream_id

    def extend(self, data: Any) -> None:
        stream = self._muxer.streams.get(self._stream_id)
        size = len(data)
        # py-libp2p lowers recv_window by what it appends, right after appending: before the
        # append, the window left is what the peer may still send.
        if stream is not None and size > max(0, stream.recv_window):
            self._muxer.window_violations += 1  # type: ignore[attr-defined]
            policy: ReceiveWindows | None = getattr(self._muxer, "receive_windows", None)
            if policy is not None:
                policy.violated(self._muxer.peer_id, size)
            raise ReceiveWindowExceeded(
                f"stream {self._stream_id}: a {size}-byte DATA frame with "
                f"{stream.recv_window} bytes of receive window left"
            )
        super().extend(data)

    def __iadd__(self, data: Any) -> _WindowedBuffer:  # type: ignore[misc]
        self.extend(data)
        return self


class _WindowedBuffers(dict[int, bytearray]):
    """The muxer's ``stream_buffers``: every buffer stored is a :class:`_WindowedBuffer`."""

    def __init__(self, muxer: Yamux) -> None:
        super().__init__()
        self._muxer = muxer

    def __setitem__(self, stream_id: int, buffer: bytearray) -> None:
        if not isinstance(buffer, _WindowedBuffer):
            buffer = _WindowedBuffer(self._muxer, stream_id, bytes(buffer))
        super().__setitem__(stream_id, buffer)


def enforce_receive_windows(muxer: Yamux, policy: ReceiveWindows | None = None) -> None:
    """Make the streams of ``muxer`` (one connection's yamux) refuse DATA past their receive
    window; counts refusals in ``muxer.window_violations`` (and reports them to ``policy``).
    Idempotent."""
    if isinstance(muxer.stream_buffers, _WindowedBuffers):
        return
    muxer.window_violations = 0  # type: ignore[attr-defined]
    muxer.receive_windows = policy  # type: ignore[attr-defined]
    buffers = _WindowedBuffers(muxer)
    for stream_id, buffer in muxer.stream_buffers.items():
        buffers[stream_id] = buffer
    muxer.stream_buffers = buffers


def windowed_yamux(host: IHost) -> ReceiveWindows | None:
    """Every yamux connection ``host`` makes from now on enforces its receive windows; returns
    the host's :class:`ReceiveWindows` (None for a host without a swarm).

    py-libp2p builds its ``Yamux`` itself whatever class the muxer options name, so the fix is
    applied to each connection as the host's upgrader makes it (an attribute of this host's
    upgrader only).
    """
    network = host.get_network()
    if not isinstance(network, Swarm):
        return None
    multistream = network.upgrader.muxer_multistream
    existing: ReceiveWindows | None = getattr(multistream, "receive_windows", None)
    if existing is not None:
        return existing
    policy = ReceiveWindows()
    multistream.receive_windows = policy  # type: ignore[attr-defined]
    make = multistream.new_conn

    async def new_conn(conn: ISecureConn, peer_id: ID) -> IMuxedConn:
        muxed = await make(conn, peer_id)
        if isinstance(muxed, Yamux):
            enforce_receive_windows(muxed, policy)
        return muxed

    multistream.new_conn = new_conn  # type: ignore[method-assign]
    return policy


def receive_windows(host: IHost) -> ReceiveWindows | None:
    """The :class:`ReceiveWindows` of a host :func:`windowed_yamux` fixed, else None."""
    network = host.get_network()
    if not isinstance(network, Swarm):
        return None
    policy: ReceiveWindows | None = getattr(
        network.upgrader.muxer_multistream, "receive_windows", None
    )
    return policy


def is_windowed(muxer: object) -> bool:
    """Whether ``muxer`` is a yamux connection whose receive windows are enforced."""
    return isinstance(muxer, Yamux) and isinstance(muxer.stream_buffers, _WindowedBuffers)
