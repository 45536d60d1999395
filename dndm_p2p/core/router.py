"""The in-process router: what applications declare their intents and interests on.

The router resolves names (dotted paths, patterns, route strings) and QoS, and declares each
handle in its route table (:class:`~dndm_p2p.core.lowlevel.RouterLowLevel`), which links every
matching intent and interest at declaration time, never per message.  The table keeps which
sinks each route delivers to and how long a route's state lives; each route's state
(:class:`~dndm_p2p.core.state.RouteState`) keeps its links; their invariants are written
there.  A transport reaches the table as :attr:`Router.lowlevel`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import trio
from google.protobuf.message import Message

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.lowlevel import RouterLowLevel
from dndm_p2p.core.pattern import Pattern, is_pattern
from dndm_p2p.core.qos import NoInterestPolicy, Overflow, QoS
from dndm_p2p.core.route import PlainRoute, Route, message_full_name, parse_route
from dndm_p2p.core.rpc import RpcEndpoints
from dndm_p2p.errors import Closed, ConfigError, RouteError, TypeMismatch
from dndm_p2p.nurseries import StackOwner, open_owned_nursery

__all__ = ["RouteInfo", "Router"]

T = TypeVar("T", bound=Message)
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A snapshot of one route known to the router."""

    route: Route
    intents: int
    interests: int


class Router(RpcEndpoints, StackOwner):
    """Links intents and interests in one process.

    Use it as an async context manager::

        async with Router() as router:
            async with router.subscribe("robot.arm.temp", Temperature) as temps, \\
                       router.publish("robot.arm.temp", Temperature) as out:
                await out.send(Temperature(celsius=21.5))
                print(await temps.receive())

    Closing the router closes every handle it made; nothing it created outlives it.  The router
    owns one nursery, used only for callback subscribers; it never starts a task per message.
    """

    def __init__(self, *, default_qos: QoS | None = None, name: str = "") -> None:
        """Create a router; ``default_qos`` applies to interests that give no QoS of their own."""
        self.name = name
        self.default_qos = default_qos or QoS()
        self._lowlevel = RouterLowLevel(self._check_open)
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        if self._closed or self._stack is not None:
            raise Closed("a router can be opened once")
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(open_owned_nursery())
        self._stack = stack
        return self

    def _on_exit(self) -> None:
        """Leaving the block closes every handle, then the callback nursery ends."""
        self.close()
        self._nursery = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close every intent and interest; later declarations raise :class:`Closed`."""
        if self._closed:
            return
        self._closed = True
        self._lowlevel.close_all()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def lowlevel(self) -> RouterLowLevel:
        """The route table, for transports (the node): not for applications.

        Through it a transport attaches a peer's subscriptions and intents to this router's
        routes and watches local declarations; see :mod:`dndm_p2p.core.lowlevel`.
        """
        return self._lowlevel

    def _check_open(self) -> trio.Nursery:
        if self._closed:
            raise Closed(f"router {self.name!r} is closed")
        if self._nursery is None:
            raise Closed("the router is not open: use 'async with Router() as router'")
        return self._nursery

    # -- declarations --------------------------------------------------------------------------

    def publish(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        no_interest: NoInterestPolicy = "drop",
    ) -> Intent[T]:
        """Declare an intent to send ``msg_type`` messages on ``route``.

        ``route`` is a dotted path (the route becomes ``FullName@path``), a route string
        (``Type@path`` or ``prefix#hash``) or a :class:`Route`.  ``no_interest`` says what
        sending does when nobody listens: ``"drop"`` (count it in ``stats.unrouted``) or
        ``"raise"`` (:class:`NoInterest`).  The intent is linked with every matching interest
        before this returns.
        """
        self._check_open()
        if no_interest not in ("drop", "raise"):
            raise ConfigError(f"no_interest must be 'drop' or 'raise', not {no_interest!r}")
        return self._lowlevel.declare_intent(self._resolve(route, msg_type), msg_type, no_interest)

    @overload
    def subscribe(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        qos: QoS | None = None,
        depth: int | None = None,
        overflow: Overflow | str | None = None,
        callback: None = None,
    ) -> Interest[T]: ...

    @overload
    def subscribe(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        qos: QoS | None = None,
        depth: int | None = None,
        overflow: Overflow | str | None = None,
        callback: Callable[[T], None] | Callable[[T], Awaitable[None]],
    ) -> Interest[T]: ...

    def subscribe(
        self,
        route: str | Route,
        msg_type: type[T],
        *,
        qos: QoS | None = None,
        depth: int | None = None,
        overflow: Overflow | str | None = None,
        callback: Callable[[T], None] | Callable[[T], Awaitable[None]] | None = None,
    ) -> Interest[T]:
        """Declare an interest in ``msg_type`` messages on a route or a pattern.

        ``route`` is a dotted path, a pattern with ``*`` (one segment) or ``**`` (any number of
        segments), a route string or a :class:`Route`.  QoS comes from ``qos`` or the
        ``depth``/``overflow`` shortcuts, else from the router's default.  With ``callback``
        the router calls it for each message in a task it owns, and iterating is not needed.
        """
        nursery = self._check_open()
        effective = _merge_qos(qos or self.default_qos, depth, overflow)
        type_name = message_full_name(msg_type)
        on: Route | Pattern
        if isinstance(route, str) and is_pattern(route):
            on = Pattern(route.partition("@")[2] if "@" in route else route)
            if "@" in route and route.partition("@")[0] != type_name:
                raise TypeMismatch(f"pattern {route!r} names another type than {type_name!r}")
        else:
            on = self._resolve(route, msg_type)
        interest = self._lowlevel.declare_interest(on, msg_type, effective)
        if callback is not None:
            nursery.start_soon(interest.run_callback, callback)
        return interest

    # -- introspection ---------------------------------------------------------------------------

    def routes(self) -> list[RouteInfo]:
        """A snapshot of every route with its number of intents and linked interests."""
        return [
            RouteInfo(state.route, len(state.intents), len(state.sinks))
            for state in self._lowlevel.states()
        ]

    def interests(self) -> list[Interest[Any]]:
        """A snapshot of the open interests."""
        return self._lowlevel.interests()

    def intents(self) -> list[Intent[Any]]:
        """A snapshot of the open local intents."""
        return self._lowlevel.intents()

    # -- internals -----------------------------------------------------------------------------

    def _resolve(self, route: str | Route, msg_type: type[T]) -> Route:
        if isinstance(route, Route):
            return route.bind(msg_type)
        if not isinstance(route, str):
            raise RouteError(f"route must be a str or Route, not {type(route).__name__}")
        if "@" in route or "#" in route:
            return parse_route(route).bind(msg_type)
        return PlainRoute.of(msg_type, route)

    def __repr__(self) -> str:
        return f"<Router {self.name!r} routes={len(self._lowlevel.states())} closed={self._closed}>"


def _merge_qos(base: QoS, depth: int | None, overflow: Overflow | str | None) -> QoS:
    if depth is None and overflow is None:
        return base
    return QoS(
        depth=base.depth if depth is None else depth,
        overflow=base.overflow if overflow is None else overflow,  # type: ignore[arg-type]
        reliable=base.reliable,
    )
