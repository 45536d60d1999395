"""Blocking request/reply: a thin layer over :mod:`dndm_p2p.core.rpc`.

:class:`Caller` and :class:`Service` hold the trio ``Caller``/``Service`` in the bus's trio
thread and forward to them, adding only the crossing, so they follow the core's request/reply
as it evolves.  Both are used with ``with``; a service's handler runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

from google.protobuf.message import Message

from dndm_p2p.core.rpc import Caller as TrioCaller
from dndm_p2p.core.rpc import Declarer
from dndm_p2p.core.rpc import Service as TrioService
from dndm_p2p.errors import Closed
from dndm_p2p.sync.bus import Node, Router
from dndm_p2p.sync.portal import Held, in_pool, serving

__all__ = ["Caller", "Service"]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Caller(Generic[Req, Resp]):
    """Sends requests to the services on ``path`` and blocks for their replies."""

    def __init__(
        self,
        bus: Router | Node,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        **options: Any,
    ) -> None:
        """Prepare a caller on an open blocking router or node; it declares when entered."""
        self._bus = bus
        self._trio: TrioCaller[Req, Resp] = TrioCaller(
            cast(Declarer, bus.trio), path, request_type, reply_type, **options
        )
        self._held: Held[TrioCaller[Req, Resp]] | None = None

    def __enter__(self) -> Self:
        self._held = self._bus.thread.hold(self._trio)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.exit()

    def call(self, request: Req, *, timeout: float = 10.0) -> Resp:
        """Send ``request`` and return the reply (see :meth:`dndm_p2p.Caller.call`)."""
        if self._held is None:
            raise Closed("the caller is not open")
        return self._bus.thread.run(lambda: self._trio.call(request, timeout=timeout))


class Service(Generic[Req, Resp]):
    """Answers requests on ``path`` while its ``with`` block runs; the handler runs in a
    thread of the bus's pool, one request at a time."""

    def __init__(
        self,
        bus: Router | Node,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Callable[[Req], Resp],
        **options: Any,
    ) -> None:
        """Prepare a service on an open blocking router or node; it serves when entered."""
        self._bus = bus

        pool = bus.callback_pool()

        async def in_worker(request: Req) -> Resp:
            return await in_pool(pool, handler, request)

        self._trio: TrioService[Req, Resp] = TrioService(
            cast(Declarer, bus.trio), path, request_type, reply_type, in_worker, **options
        )
        self._held: Held[None] | None = None

    @property
    def served(self) -> int:
        """Requests answered so far."""
        return self._trio.served

    def __enter__(self) -> Self:
        self._held = self._bus.thread.hold(serving(self._trio.serve))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.exit()
