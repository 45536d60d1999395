"""asyncio :class:`Router` and :class:`Node`: the trio ones, run in the loop's guest run.

Entering one acquires the loop's :class:`~dndm_p2p.aio.runtime.GuestRuntime` and enters the
trio object in a trio task that holds it; leaving exits it there (closing every handle) and
releases the runtime.  Declarations are synchronous, as in trio: ``publish`` and ``subscribe``
return handles at once, already linked.  ``import dndm_p2p.aio`` loads no py-libp2p; the node
is imported when an :class:`Node` is entered.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

from google.protobuf.message import Message

from dndm_p2p.aio.handles import Intent, Interest
from dndm_p2p.aio.runtime import GuestRuntime, Held
from dndm_p2p.config import NodeConfig
from dndm_p2p.core.interest import Interest as TrioInterest
from dndm_p2p.core.qos import NoInterestPolicy, Overflow, QoS
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import RouteInfo
from dndm_p2p.core.router import Router as TrioRouter
from dndm_p2p.errors import Closed

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node as TrioNode
    from dndm_p2p.node.types import LinkStats, PeerInfo

__all__ = ["Node", "Router"]

T = TypeVar("T", bound=Message)
B = TypeVar("B", "TrioRouter", "TrioNode")

#: A subscriber callback on the asyncio side: a function or a coroutine function.
AioCallback = Callable[[T], None] | Callable[[T], Awaitable[None]]


class _Bus(ABC, Generic[B]):
    """What the asyncio router and node share: the runtime, the held trio object, declaring."""

    def __init__(self) -> None:
        self._runtime: GuestRuntime | None = None
        self._held: Held[B] | None = None

    @abstractmethod
    def _make(self) -> AbstractAsyncContextManager[B]:
        """Implemented by each subclass."""

    async def __aenter__(self) -> Self:
        if self._runtime is not None:
            raise Closed("an asyncio router or node can be entered once")
        runtime = await GuestRuntime.acquire()
        try:
            self._held = await runtime.hold(self._make())
        except BaseException:
            await runtime.release()
            raise
        self._runtime = runtime
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every handle and stop the trio object; idempotent."""
        held, self._held = self._held, None
        runtime = self._runtime
        if held is None or runtime is None:
            return
        try:
            await held.exit()
        finally:
            await runtime.release()

    @property
    def runtime(self) -> GuestRuntime:
        """The loop's trio guest run (for :mod:`dndm_p2p.aio.rpc` and tests)."""
        if self._runtime is None or self._held is None:
            raise Closed("not open: use 'async with'")
        return self._runtime

    @property
    def trio(self) -> B:
        """The trio object this one drives."""
        if self._held is None:
            raise Closed("not open: use 'async with'")
        return self._held.value

    @abstractmethod
    def _router(self) -> TrioRouter:
        """Implemented by each subclass."""

    def publish(
        self, route: str | Route, msg_type: type[T], *, no_interest: NoInterestPolicy = "drop"
    ) -> Intent[T]:
        """Declare an intent (see :meth:`dndm_p2p.Router.publish`)."""
        return Intent(self.runtime, self.trio.publish(route, msg_type, no_interest=no_interest))

    def subscribe(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        qos: QoS | None = None,
        depth: int | None = None,
        overflow: Overflow | str | None = None,
        callback: AioCallback[T] | None = None,
        **options: Any,
    ) -> Interest[T]:
        """Declare an interest (see :meth:`dndm_p2p.Router.subscribe`).

        A ``callback`` may be a function (called between the loop's other callbacks) or an
        asyncio coroutine function (each call awaited in an asyncio task, one at a time).  A
        callback that raises closes the interest with a :class:`~dndm_p2p.CallbackError`.
        ``options`` go to the trio declaration (``reliable=True`` on a node).
        """
        runtime = self.runtime
        trio_callback: Callable[[T], Any] | None = None
        if callback is not None and inspect.iscoroutinefunction(callback):
            coroutine_fn = callback

            async def trio_callback(msg: T) -> None:
                await runtime.await_asyncio(cast(Any, coroutine_fn)(msg))

        elif callback is not None:
            trio_callback = callback
        declare: Callable[..., TrioInterest[T]] = self.trio.subscribe
        handle = declare(
            route,
            msg_type,
            qos=qos,
            depth=depth,
            overflow=overflow,
            callback=trio_callback,
            **options,
        )
        return Interest(runtime, handle)

    def routes(self) -> list[RouteInfo]:
        """Every route with its numbers of intents and linked interests."""
        return self._router().routes()


class Router(_Bus[TrioRouter]):
    """The in-process router for asyncio programs::

    async with aio.Router() as router:
        async with router.subscribe("robot.arm.temp", Temperature) as temps, \\
                   router.publish("robot.arm.temp", Temperature) as out:
            await out.send(Temperature(celsius=21.5))
            print(await temps.receive())
    """

    def __init__(self, *, default_qos: QoS | None = None, name: str = "") -> None:
        """Prepare a router; it opens when entered."""
        super().__init__()
        self._default_qos = default_qos
        self._name = name

    def _make(self) -> AbstractAsyncContextManager[TrioRouter]:
        return TrioRouter(default_qos=self._default_qos, name=self._name)

    def _router(self) -> TrioRouter:
        return self.trio


class Node(_Bus["TrioNode"]):
    """A node on libp2p for asyncio programs (see :class:`dndm_p2p.Node`)."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        """Prepare a node; it starts when entered."""
        super().__init__()
        self.config = config or NodeConfig()

    def _make(self) -> AbstractAsyncContextManager[TrioNode]:
        from dndm_p2p.node.node import Node as TrioNode

        return TrioNode(self.config)

    def _router(self) -> TrioRouter:
        return self.trio.router

    @property
    def peer_id(self) -> str:
        """This node's peer id."""
        return self.trio.peer_id

    @property
    def addrs(self) -> list[str]:
        """The addresses this node listens on, with ``/p2p/<peer id>``."""
        return self.trio.addrs

    async def connect(self, addr: str, *, keep: bool = True) -> str:
        """Connect to a peer and wait for its hello (see :meth:`dndm_p2p.Node.connect`)."""
        return await self.runtime.run(lambda: self.trio.connect(addr, keep=keep))

    def peers(self) -> list[PeerInfo]:
        """The peers with a running session."""
        return self.trio.peers()

    def links(self) -> list[LinkStats]:
        """Every remote link, both directions."""
        return self.trio.links()
