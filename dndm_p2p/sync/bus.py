"""Blocking :class:`Router` and :class:`Node`: the trio ones, run in a background trio thread.

Each owns a :class:`~dndm_p2p.sync.portal.TrioThread`, started when it is entered (``with``)
or opened (:meth:`open`), stopped when it is left or closed, and at interpreter exit at the
latest.  Declarations return handles at once, already linked.  A ``callback`` subscriber is
called on a thread pool (``callback_workers`` threads; with one, in order).
``import dndm_p2p.sync`` loads no py-libp2p; the node is imported when a :class:`Node` opens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from google.protobuf.message import Message

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.interest import Interest as TrioInterest
from dndm_p2p.core.qos import NoInterestPolicy, Overflow, QoS
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import RouteInfo
from dndm_p2p.core.router import Router as TrioRouter
from dndm_p2p.errors import Closed
from dndm_p2p.sync.handles import Intent, Interest
from dndm_p2p.sync.portal import Held, TrioThread, in_pool

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node as TrioNode
    from dndm_p2p.node.types import LinkStats, PeerInfo

__all__ = ["Node", "Router"]

T = TypeVar("T", bound=Message)
B = TypeVar("B", "TrioRouter", "TrioNode")


class _Bus(ABC, Generic[B]):
    """What the blocking router and node share: the thread, the held trio object, declaring."""

    def __init__(self, callback_workers: int) -> None:
        self._thread: TrioThread | None = None
        self._held: Held[B] | None = None
        self._callback_workers = callback_workers
        self._pool: ThreadPoolExecutor | None = None

    @abstractmethod
    def _make(self) -> AbstractAsyncContextManager[B]:
        """Implemented by each subclass."""

    def open(self) -> Self:
        """Start the thread and the trio object; :meth:`close` (or leaving ``with``) ends them."""
        if self._thread is not None:
            raise Closed("a blocking router or node can be opened once")
        thread = TrioThread()
        try:
            self._held = thread.hold(self._make())
        except BaseException:
            thread.stop()
            raise
        self._thread = thread
        return self

    def close(self) -> None:
        """Close every handle, stop the trio object and the thread (idempotent)."""
        held, self._held = self._held, None
        thread = self._thread
        try:
            if held is not None:
                held.exit()
        finally:
            if thread is not None:
                thread.stop()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def thread(self) -> TrioThread:
        """The background trio thread (for :mod:`dndm_p2p.sync.rpc` and tests)."""
        if self._thread is None or self._held is None:
            raise Closed("not open: use 'with' or open()")
        return self._thread

    @property
    def trio(self) -> B:
        """The trio object this one drives (use it only in the trio thread)."""
        if self._held is None:
            raise Closed("not open: use 'with' or open()")
        return self._held.value

    @abstractmethod
    def _router(self) -> TrioRouter:
        """Implemented by each subclass."""

    def publish(
        self, route: str | Route, msg_type: type[T], *, no_interest: NoInterestPolicy = "drop"
    ) -> Intent[T]:
        """Declare an intent (see :meth:`dndm_p2p.Router.publish`)."""
        thread = self.thread
        bus = self.trio
        return Intent(
            thread, thread.run_sync(lambda: bus.publish(route, msg_type, no_interest=no_interest))
        )

    def subscribe(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        qos: QoS | None = None,
        depth: int | None = None,
        overflow: Overflow | str | None = None,
        callback: Callable[[T], None] | None = None,
        **options: Any,
    ) -> Interest[T]:
        """Declare an interest (see :meth:`dndm_p2p.Router.subscribe`).

        ``callback`` is called on the thread pool for each message; a callback that raises
        closes the interest with a :class:`~dndm_p2p.CallbackError`.
        """
        thread = self.thread
        declare: Callable[..., TrioInterest[T]] = self.trio.subscribe
        trio_callback: Callable[[T], Any] | None = None
        if callback is not None:
            pool = self._callback_pool()
            fn = callback

            async def trio_callback(msg: T) -> None:
                await in_pool(pool, fn, msg)

        handle = thread.run_sync(
            lambda: declare(
                route,
                msg_type,
                qos=qos,
                depth=depth,
                overflow=overflow,
                callback=trio_callback,
                **options,
            )
        )
        return Interest(thread, handle)

    def callback_pool(self) -> ThreadPoolExecutor:
        """The pool callbacks and service handlers run on (started on first use)."""
        return self._callback_pool()

    def _callback_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._callback_workers, thread_name_prefix="dndm-p2p callback"
            )
        return self._pool

    def routes(self) -> list[RouteInfo]:
        """Every route with its numbers of intents and linked interests."""
        return self.thread.run_sync(lambda: self._router().routes())


class Router(_Bus[TrioRouter]):
    """The in-process router for threaded code::

    with sync.Router() as router:
        with router.subscribe("robot.arm.temp", Temperature) as temps, \\
             router.publish("robot.arm.temp", Temperature) as out:
            out.send(Temperature(celsius=21.5))
            print(temps.receive(timeout=1.0))
    """

    def __init__(
        self, *, default_qos: QoS | None = None, name: str = "", callback_workers: int = 4
    ) -> None:
        """Prepare a router; it opens when entered."""
        super().__init__(callback_workers)
        self._default_qos = default_qos
        self._name = name

    def _make(self) -> AbstractAsyncContextManager[TrioRouter]:
        return TrioRouter(default_qos=self._default_qos, name=self._name)

    def _router(self) -> TrioRouter:
        return self.trio


class Node(_Bus["TrioNode"]):
    """A node on libp2p for threaded code (see :class:`dndm_p2p.Node`)."""

    def __init__(self, config: NodeConfig | None = None, *, callback_workers: int = 4) -> None:
        """Prepare a node; it starts when entered."""
        super().__init__(callback_workers)
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
        return self.thread.run_sync(lambda: self.trio.addrs)

    def connect(self, addr: str, *, keep: bool = True, timeout: float | None = None) -> str:
        """Connect to a peer and wait for its hello (see :meth:`dndm_p2p.Node.connect`)."""
        node = self.trio
        return self.thread.run(lambda: node.connect(addr, keep=keep), timeout=timeout)

    def peers(self) -> list[PeerInfo]:
        """The peers with a running session."""
        return self.thread.run_sync(lambda: self.trio.peers())

    def links(self) -> list[LinkStats]:
        """Every remote link, both directions."""
        return self.thread.run_sync(lambda: self.trio.links())
