"""The in-process router: declares intents and interests and links every matching pair.

One :class:`RouteState` exists per route that has at least one intent or exact interest.  It
holds the route's intents and the tuple of sinks (subscriber queues) that every intent of the
route delivers to.  Links are kept *at declaration time*, never per message: when an interest
appears, the router appends its queue to the sink tuple of every route it matches and tells each
intent there; when it closes, the queue is removed at once.  Sending is then a loop over a tuple.

Invariants, kept by doing every change synchronously in the trio thread:

* a route state's ``sinks`` are exactly the open subscribers that match it (exact interests on
  its id, plus pattern interests of its type whose pattern matches its path);
* every intent's tracker holds exactly the ``link`` of each sink of its route, and every
  subscriber's tracker the ``link`` of each intent of each route it is attached to;
* a route state with no intent and no exact interest does not exist (nothing outlives its
  owners), and a closed handle is in no state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

import trio
from google.protobuf.message import Message

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.pattern import Pattern, is_pattern
from dndm_p2p.core.qos import NoInterestPolicy, Overflow, QoS
from dndm_p2p.core.queue import Sink
from dndm_p2p.core.route import PlainRoute, Route, message_full_name, parse_route
from dndm_p2p.errors import Closed, ConfigError, RouteError, TypeMismatch, UnknownRoute
from dndm_p2p.nurseries import open_owned_nursery

__all__ = ["RouteInfo", "RouteState", "Router", "RouterObserver", "Source"]

T = TypeVar("T", bound=Message)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A snapshot of one route known to the router."""

    route: Route
    intents: int
    interests: int


class Source(Protocol):
    """Something that feeds a route: a local :class:`Intent`, or the node's inbound remote link.

    A remote source (``link.peer`` set) delivers to local sinks only: messages travel one hop.
    """

    link: LinkInfo
    tracker: LinkTracker


class RouterObserver(Protocol):
    """Told synchronously when a local intent or interest is declared or withdrawn (the node
    uses this to advertise them to peers)."""

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle was declared."""

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle closed."""


def _linkable(source: Source, sink: Sink[Any]) -> bool:
    return source.link.peer is None or sink.link.peer is None


class RouteState:
    """The sources (intents) of one route and the sinks they deliver to."""

    __slots__ = (
        "_router",
        "blocking_sinks",
        "exact",
        "intents",
        "local_blocking_sinks",
        "local_sinks",
        "msg_type",
        "patterned",
        "route",
        "sinks",
    )

    def __init__(self, router: Router, route: Route, msg_type: type[Message]) -> None:
        self._router = router
        self.route = route
        self.msg_type = msg_type
        #: Local intents and remote sources, by object identity.
        self.intents: dict[int, Source] = {}
        #: Exact subscribers (their route is this route), by object identity.
        self.exact: dict[int, Sink[Any]] = {}
        #: Pattern subscribers attached because their pattern matches this route.
        self.patterned: dict[int, Sink[Any]] = {}
        #: Every sink: where a local intent delivers.
        self.sinks: tuple[Sink[Any], ...] = ()
        self.blocking_sinks: tuple[Sink[Any], ...] = ()
        #: Sinks in this process: where a remote source delivers.
        self.local_sinks: tuple[Sink[Any], ...] = ()
        self.local_blocking_sinks: tuple[Sink[Any], ...] = ()

    # -- the send path's helpers -------------------------------------------------------------------

    def first_full_sink(self, local_only: bool = False) -> Sink[Any] | None:
        """A ``block`` sink with no room, if any."""
        for sink in self.local_blocking_sinks if local_only else self.blocking_sinks:
            if sink.room() <= 0:
                return sink
        return None

    def min_room(self, local_only: bool = False) -> int:
        """The smallest free room among ``block`` sinks."""
        sinks = self.local_blocking_sinks if local_only else self.blocking_sinks
        return min(sink.room() for sink in sinks)

    @property
    def has_local_intent(self) -> bool:
        """True when at least one intent of this process publishes the route."""
        return any(source.link.peer is None for source in self.intents.values())

    # -- wiring --------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        sinks = (*self.exact.values(), *self.patterned.values())
        self.sinks = sinks
        self.blocking_sinks = tuple(s for s in sinks if s.blocking)
        self.local_sinks = tuple(s for s in sinks if s.link.peer is None)
        self.local_blocking_sinks = tuple(s for s in self.local_sinks if s.blocking)

    def add_intent(self, source: Source) -> None:
        """Link a new source with every sink it may deliver to."""
        self.intents[id(source)] = source
        for sink in self.sinks:
            if _linkable(source, sink):
                source.tracker.add(sink.link)
                sink.tracker.add(source.link)

    def remove_intent(self, source: Source) -> None:
        """Unlink a source from every sink; drop the state if nothing is left."""
        if self.intents.pop(id(source), None) is None:
            return
        for sink in self.sinks:
            sink.tracker.remove(source.link)
        if source.link.peer is None:
            self._router.notify_withdrawn(source)  # type: ignore[arg-type]
        self._router.forget_if_empty(self)

    def add_sink(self, sink: Sink[Any], *, exact: bool) -> None:
        """Attach a subscriber and link it with every source that may deliver to it."""
        (self.exact if exact else self.patterned)[id(sink)] = sink
        self._rebuild()
        for source in self.intents.values():
            if _linkable(source, sink):
                source.tracker.add(sink.link)
                sink.tracker.add(source.link)

    def remove_sink(self, sink: Sink[Any]) -> None:
        """Detach a subscriber and unlink it from every source."""
        key = id(sink)
        if self.exact.pop(key, None) is None and self.patterned.pop(key, None) is None:
            return
        self._rebuild()
        for source in self.intents.values():
            source.tracker.remove(sink.link)
            sink.tracker.remove(source.link)

    @property
    def empty(self) -> bool:
        """True when no source and no exact subscriber holds this state."""
        return not self.intents and not self.exact


class Router:
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
        self._routes: dict[str, RouteState] = {}
        #: Pattern interests by message full name.
        self._patterns: dict[str, dict[int, Interest[Any]]] = {}
        self._interests: dict[int, Interest[Any]] = {}
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._closed = False
        self._observers: list[RouterObserver] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        if self._closed or self._stack is not None:
            raise Closed("a router can be opened once")
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(open_owned_nursery())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        stack, self._stack = self._stack, None
        self._nursery = None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close every intent and interest; later declarations raise :class:`Closed`."""
        if self._closed:
            return
        self._closed = True
        for state in list(self._routes.values()):
            for source in list(state.intents.values()):
                if isinstance(source, Intent):
                    source.close()
                else:
                    state.remove_intent(source)
        for interest in list(self._interests.values()):
            interest.close()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

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
        bound = self._resolve(route, msg_type)
        state = self._state_for(bound, msg_type)
        intent: Intent[T] = Intent(bound, msg_type, state, no_interest)
        state.add_intent(intent)
        for observer in self._observers:
            observer.declared(intent)
        return intent

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
        interest: Interest[T]
        if isinstance(route, str) and is_pattern(route):
            pattern = Pattern(route.partition("@")[2] if "@" in route else route)
            if "@" in route and route.partition("@")[0] != type_name:
                raise TypeMismatch(f"pattern {route!r} names another type than {type_name!r}")
            interest = Interest(self, msg_type, effective, pattern=pattern, type_name=type_name)
            self._patterns.setdefault(type_name, {})[interest.handle_id] = interest
            for state in list(self._routes.values()):
                if _pattern_matches(state.route, type_name, pattern):
                    state.add_sink(interest.queue, exact=False)
        else:
            bound = self._resolve(route, msg_type)
            state = self._state_for(bound, msg_type)
            interest = Interest(self, msg_type, effective, route=bound)
            state.add_sink(interest.queue, exact=True)
        self._interests[interest.handle_id] = interest
        if callback is not None:
            nursery.start_soon(interest.run_callback, callback)
        for observer in self._observers:
            observer.declared(interest)
        return interest

    # -- introspection ---------------------------------------------------------------------------

    def routes(self) -> list[RouteInfo]:
        """A snapshot of every route with its number of intents and linked interests."""
        return [
            RouteInfo(state.route, len(state.intents), len(state.sinks))
            for state in self._routes.values()
        ]

    def interests(self) -> list[Interest[Any]]:
        """A snapshot of the open interests."""
        return list(self._interests.values())

    def intents(self) -> list[Intent[Any]]:
        """A snapshot of the open local intents."""
        return [
            source
            for state in self._routes.values()
            for source in state.intents.values()
            if isinstance(source, Intent)
        ]

    def matching_interests(self, route: Route) -> list[Interest[Any]]:
        """Local interests that want ``route``: by its id, or by pattern for a plain route."""
        found: list[Interest[Any]] = []
        for interest in self._interests.values():
            if interest.route is not None:
                if interest.route == route:
                    found.append(interest)
            elif interest.pattern is not None and _pattern_matches(
                route, message_full_name(interest.msg_type), interest.pattern
            ):
                found.append(interest)
        return found

    def state(self, route: Route) -> RouteState | None:
        """The state of ``route``, if any intent or exact interest holds it."""
        return self._routes.get(route.id)

    # -- extension points for transports (the node) ----------------------------------------------

    def add_observer(self, observer: RouterObserver) -> None:
        """Be told of every local declaration and withdrawal from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: RouterObserver) -> None:
        """Stop telling ``observer``."""
        if observer in self._observers:
            self._observers.remove(observer)

    def notify_withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """Tell the observers that a local handle closed (called by the handles' close)."""
        for observer in list(self._observers):
            observer.withdrawn(handle)

    def attach_remote_sink(self, route: Route, sink: Sink[Any]) -> RouteState:
        """Attach a peer's subscription as a sink of a route this process publishes.

        Raises :class:`UnknownRoute` when no local intent publishes ``route``.
        """
        self._check_open()
        state = self._routes.get(route.id)
        if state is None or not state.has_local_intent:
            raise UnknownRoute(f"no local intent publishes {route}", route=str(route))
        state.add_sink(sink, exact=True)
        return state

    def detach_sink(self, state: RouteState, sink: Sink[Any]) -> None:
        """Detach a sink attached with :meth:`attach_remote_sink`."""
        state.remove_sink(sink)
        self.forget_if_empty(state)

    def attach_source(self, route: Route, msg_type: type[Message], source: Source) -> RouteState:
        """Attach a remote source (a peer's intent) so that it feeds the local subscribers."""
        self._check_open()
        bound = route.bind(msg_type)
        state = self._state_for(bound, msg_type)
        state.add_intent(source)
        return state

    def detach_source(self, state: RouteState, source: Source) -> None:
        """Detach a source attached with :meth:`attach_source`."""
        state.remove_intent(source)

    # -- internals used by handles -------------------------------------------------------------

    def _resolve(self, route: str | Route, msg_type: type[T]) -> Route:
        if isinstance(route, Route):
            return route.bind(msg_type)
        if not isinstance(route, str):
            raise RouteError(f"route must be a str or Route, not {type(route).__name__}")
        if "@" in route or "#" in route:
            return parse_route(route).bind(msg_type)
        return PlainRoute.of(msg_type, route)

    def _state_for(self, route: Route, msg_type: type[Message]) -> RouteState:
        state = self._routes.get(route.id)
        if state is not None:
            if state.msg_type is not msg_type:
                raise TypeMismatch(
                    f"route {route} is already declared with class "
                    f"{state.msg_type.__module__}.{state.msg_type.__qualname__}, "
                    f"not {msg_type.__module__}.{msg_type.__qualname__}"
                )
            return state
        state = RouteState(self, route, msg_type)
        self._routes[route.id] = state
        if isinstance(route, PlainRoute):
            for interest in self._patterns.get(route.type_name, {}).values():
                if interest.pattern is not None and _pattern_matches(
                    route, route.type_name, interest.pattern
                ):
                    state.add_sink(interest.queue, exact=False)
        return state

    def forget_if_empty(self, state: RouteState) -> None:
        """Drop a route state that no intent or exact interest holds any more."""
        if state.empty and self._routes.get(state.route.id) is state:
            del self._routes[state.route.id]
            for sink in list(state.patterned.values()):
                state.remove_sink(sink)

    def remove_interest(self, interest: Interest[Any]) -> None:
        """Detach a closing interest from every route it is attached to."""
        if self._interests.pop(interest.handle_id, None) is not None:
            self.notify_withdrawn(interest)
        sink = interest.queue
        if interest.pattern is not None:
            patterns = self._patterns.get(_type_key(interest))
            if patterns is not None:
                patterns.pop(interest.handle_id, None)
                if not patterns:
                    del self._patterns[_type_key(interest)]
            for state in list(self._routes.values()):
                if id(sink) in state.patterned:
                    state.remove_sink(sink)
        elif interest.route is not None:
            exact_state = self._routes.get(interest.route.id)
            if exact_state is not None:
                exact_state.remove_sink(sink)
                self.forget_if_empty(exact_state)

    def __repr__(self) -> str:
        return f"<Router {self.name!r} routes={len(self._routes)} closed={self._closed}>"


def _type_key(interest: Interest[Any]) -> str:
    return message_full_name(interest.msg_type)


def _pattern_matches(route: Route, type_name: str, pattern: Pattern) -> bool:
    return (
        isinstance(route, PlainRoute)
        and route.type_name == type_name
        and pattern.matches(route.segments)
    )


def _merge_qos(base: QoS, depth: int | None, overflow: Overflow | str | None) -> QoS:
    if depth is None and overflow is None:
        return base
    return QoS(
        depth=base.depth if depth is None else depth,
        overflow=base.overflow if overflow is None else overflow,  # type: ignore[arg-type]
        reliable=base.reliable,
    )
