"""py-libp2p 0.8.1 workaround: an mplex stream cannot be written while a task reads it.

``MplexStream`` guards ``read`` with the read side and ``write`` with the write side of one
``ReadWriteLock``, which is a readers-writer lock: a reader *excludes* writers.  A task parked
in ``read()`` (waiting for the peer) therefore blocks every ``write()`` on the same stream
until data arrives.  A full-duplex protocol, where each end reads in one task and writes in
another (DNDM's data links: frames one way, credit the other; its control streams: pings both
ways), deadlocks: the publisher's first frame goes out, then its writer waits forever behind
its own reader, which waits for credit that the subscriber only grants on frames.
``tests/simnet/test_simnet_mplex.py`` shows it.  yamux is not affected (it only takes the write
side).

DNDM's own hosts use yamux only; simulations use mplex because it is much cheaper per
connection.  :func:`mplex_duplex_fix` gives every mplex stream created inside its block
independent locks: one reader at a time and one writer at a time, as a TCP socket allows.
:func:`mplex_duplex_fix` does the same while its block runs (the runner uses it around a run,
so that other code in the process keeps py-libp2p's own behaviour).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream

__all__ = ["DuplexLock", "mplex_duplex_fix", "mplex_duplex_fix_installed"]


class DuplexLock:
    """Stands in for an mplex stream's ``rw_lock``: reads and writes exclude only their own
    kind, never each other."""

    __slots__ = ("_read", "_write")

    def __init__(self) -> None:
        self._read = trio.Lock()
        self._write = trio.Lock()

    @asynccontextmanager
    async def read_lock(self) -> AsyncIterator[None]:
        """Held by one reader at a time."""
        async with self._read:
            yield

    @asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Held by one writer at a time."""
        async with self._write:
            yield


_original_init = MplexStream.__init__


def _init_with_duplex_lock(self: MplexStream, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.rw_lock = DuplexLock()  # type: ignore[assignment]


@contextmanager
def mplex_duplex_fix() -> Iterator[None]:
    """Inside the block, mplex streams created are full duplex; py-libp2p's own on exit."""
    previous = MplexStream.__init__
    MplexStream.__init__ = _init_with_duplex_lock  # type: ignore[method-assign]
    try:
        yield
    finally:
        MplexStream.__init__ = previous  # type: ignore[method-assign]


def mplex_duplex_fix_installed() -> bool:
    """Whether :func:`mplex_duplex_fix` is in force."""
    installed: bool = MplexStream.__init__ is _init_with_duplex_lock
    return installed
