"""asyncio request/reply: a thin layer over :mod:`dndm_p2p.core.rpc`.

:class:`Caller` and :class:`Service` hold the trio ``Caller``/``Service`` in the loop's guest
run and forward to them; they add nothing of their own but the crossing, so they follow the
core's request/reply as it evolves.  Both are used with ``async with``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

import trio
from google.protobuf.message import Message

from dndm_p2p.aio.bus import Node, Router
from dndm_p2p.aio.runtime import Held
from dndm_p2p.core.rpc import Caller as TrioCaller
from dndm_p2p.core.rpc import Declarer
from dndm_p2p.core.rpc import Service as TrioService
from dndm_p2p.errors import Closed

__all__ = ["Caller", "Service"]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Caller(Generic[Req, Resp]):
    """Sends requests to the services on ``path`` and awaits their replies (asyncio)."""

    def __init__(
        self,
        bus: Router | Node,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        **options: Any,
    ) -> None:
        """Prepare a caller on an open asyncio router or node; it declares when entered."""
        self._bus = bus
        self._trio: TrioCaller[Req, Resp] = TrioCaller(
            cast(Declarer, bus.trio), path, request_type, reply_type, **options
        )
        self._held: Held[TrioCaller[Req, Resp]] | None = None

    async def __aenter__(self) -> Self:
        self._held = await self._bus.runtime.hold(self._trio)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.exit()

    async def call(self, request: Req, *, timeout: float = 10.0) -> Resp:  # noqa: ASYNC109
        """Send ``request`` and return the reply (see :meth:`dndm_p2p.Caller.call`)."""
        if self._held is None:
            raise Closed("the caller is not open")
        return await self._bus.runtime.run(lambda: self._trio.call(request, timeout=timeout))


class Service(Generic[Req, Resp]):
    """Answers requests on ``path`` while its ``async with`` block runs (asyncio).

    ``handler`` is a function or an asyncio coroutine function returning the reply.
    """

    def __init__(
        self,
        bus: Router | Node,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Callable[[Req], Resp] | Callable[[Req], Awaitable[Resp]],
        **options: Any,
    ) -> None:
        """Prepare a service on an open asyncio router or node; it serves when entered."""
        self._bus = bus
        runtime = bus.runtime
        trio_handler: Callable[[Req], Resp | Awaitable[Resp]]
        if inspect.iscoroutinefunction(handler):
            coroutine_fn = handler

            async def trio_handler(request: Req) -> Resp:
                result = await runtime.await_asyncio(cast(Any, coroutine_fn)(request))
                return cast(Resp, result)

        else:
            trio_handler = handler
        self._trio: TrioService[Req, Resp] = TrioService(
            cast(Declarer, bus.trio), path, request_type, reply_type, trio_handler, **options
        )
        self._held: Held[None] | None = None

    @property
    def served(self) -> int:
        """Requests answered so far."""
        return self._trio.served

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._trio.serve)
            yield
            nursery.cancel_scope.cancel()

    async def __aenter__(self) -> Self:
        self._held = await self._bus.runtime.hold(self._serving())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.exit()
