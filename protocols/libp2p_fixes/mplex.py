"""A full-duplex mplex muxer: reads and writes of one mplex stream never wait for each other.

:class:`DuplexMplex` is a drop-in muxer class for a host's ``muxer_opt``; only the connections
of hosts built with it get full-duplex streams, every other ``Mplex`` of the process keeps
py-libp2p's behaviour.  The defect is listed in the index, :mod:`protocols.libp2p_fixes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from libp2p.stream_muxer.mplex.datastructures import StreamID
from libp2p.stream_muxer.mplex.mplex import Mplex
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream

__all__ = ["DuplexLock", "DuplexMplex", "is_duplex"]


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


class DuplexMplex(Mplex):
    """py-libp2p's mplex muxer whose streams (opened or accepted) each have a :class:`DuplexLock`:
    one reader and one writer at a time, as a TCP socket allows."""

    async def _initialize_stream(self, stream_id: StreamID, name: str) -> MplexStream:
        stream = await super()._initialize_stream(stream_id, name)
        stream.rw_lock = DuplexLock()  # type: ignore[assignment]
        return stream


def is_duplex(stream: MplexStream) -> bool:
    """Whether ``stream`` was made by a :class:`DuplexMplex` (reads and writes independent)."""
    return isinstance(stream.rw_lock, DuplexLock)
