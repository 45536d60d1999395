"""The route table behind a router, and its interface for transports: not for applications.

Applications use :class:`~dndm_p2p.core.router.Router` (``publish``, ``subscribe``,
introspection, ``async with``).  A transport (the node) obtains the router's
:class:`RouterLowLevel` as ``router.lowlevel`` to attach what stands for a peer: a peer's
subscription as a sink (:meth:`RouterLowLevel.attach_remote_sink`), a peer's intent as a source
(:meth:`RouterLowLevel.attach_source`), and to watch local declarations
(:meth:`RouterLowLevel.add_observer`).  Everything such code needs is importable from here.

Invariants kept here, by doing every change synchronously in the trio thread (those of one
route's links are kept by :class:`~dndm_p2p.core.state.RouteState`):

* a route state is attached to exactly the open subscribers that match it: exact interests on
  its id, pattern interests of its type whose pattern matches its path, and attached remote
  sinks; a pattern interest is attached to every matching state that exists, including the
  states created after it;
* a route state with no source and no exact subscriber does not exist (nothing outlives its
  owners), and a closed handle is in no state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.qos import NoInterestPolicy, QoS
from dndm_p2p.core.queue import Sink
from dndm_p2p.core.route import PlainRoute, Route, message_full_name
from dndm_p2p.core.state import RouteState, Source
from dndm_p2p.errors import TypeMismatch, UnknownRoute

__all__ = ["RouteState", "RouterLowLevel", "RouterObserver", "Source"]

T = TypeVar("T", bound=Message)


class RouterObserver(Protocol):
    """Told synchronously when a local intent or interest is declared or withdrawn (the node
    uses this to advertise them to peers)."""

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle was declared."""

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle closed."""


class RouterLowLevel:
    """The route states, the local handles and the observers of one router.

    The router declares its handles here; a transport attaches its remote ends here.  Every
    method that attaches something raises :class:`~dndm_p2p.errors.Closed` once the router
    closed (or before it opened).
    """

    __slots__ = ("_check_open", "_interests", "_observers", "_patterns", "_routes")

    def __init__(self, check_open: Callable[[], object]) -> None:
        """An empty table; ``check_open`` raises :class:`~dndm_p2p.errors.Closed` unless the
        owning router is open."""
        self._check_open = check_open
        self._routes: dict[str, RouteState] = {}
        #: Pattern interests by message full name.
        self._patterns: dict[str, dict[int, Interest[Any]]] = {}
        self._interests: dict[int, Interest[Any]] = {}
        self._observers: list[RouterObserver] = []

    # -- declarations (what Router builds on) ------------------------------------------------------

    def declare_intent(
        self, route: Route, msg_type: type[T], no_interest: NoInterestPolicy
    ) -> Intent[T]:
        """A new intent on the bound ``route``, linked with every matching interest."""
        state = self._state_for(route, msg_type)
        intent: Intent[T] = Intent(route, msg_type, state, no_interest)
        state.add_intent(intent)
        for observer in self._observers:
            observer.declared(intent)
        return intent

    def declare_interest(self, on: Route | Pattern, msg_type: type[T], qos: QoS) -> Interest[T]:
        """A new interest on a bound route or on a pattern, linked with every intent that
        matches it."""
        interest: Interest[T]
        if isinstance(on, Pattern):
            pattern = on
            type_name = message_full_name(msg_type)
            interest = Interest(
                self._remove_interest, msg_type, qos, pattern=pattern, type_name=type_name
            )
            self._patterns.setdefault(type_name, {})[interest.handle_id] = interest
            for state in list(self._routes.values()):
                if _pattern_matches(state.route, type_name, pattern):
                    state.add_sink(interest.queue, exact=False)
        else:
            state = self._state_for(on, msg_type)
            interest = Interest(self._remove_interest, msg_type, qos, route=on)
            state.add_sink(interest.queue, exact=True)
        self._interests[interest.handle_id] = interest
        for observer in self._observers:
            observer.declared(interest)
        return interest

    def close_all(self) -> None:
        """Close every local handle and detach every remote source."""
        for state in list(self._routes.values()):
            for source in list(state.intents.values()):
                if isinstance(source, Intent):
                    source.close()
                else:
                    state.remove_intent(source)
        for interest in list(self._interests.values()):
            interest.close()

    # -- introspection -----------------------------------------------------------------------------

    def states(self) -> list[RouteState]:
        """A snapshot of every route state."""
        return list(self._routes.values())

    def state(self, route: Route) -> RouteState | None:
        """The state of ``route``, if any source or exact subscriber holds it."""
        return self._routes.get(route.id)

    def intents(self) -> list[Intent[Any]]:
        """A snapshot of the open local intents."""
        return [
            source
            for state in self._routes.values()
            for source in state.intents.values()
            if isinstance(source, Intent)
        ]

    def interests(self) -> list[Interest[Any]]:
        """A snapshot of the open local interests."""
        return list(self._interests.values())

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

    # -- observers ---------------------------------------------------------------------------------

    def add_observer(self, observer: RouterObserver) -> None:
        """Be told of every local declaration and withdrawal from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: RouterObserver) -> None:
        """Stop telling ``observer``."""
        if observer in self._observers:
            self._observers.remove(observer)

    # -- remote ends -------------------------------------------------------------------------------

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
        """Detach a sink attached with :meth:`attach_remote_sink` (idempotent)."""
        state.remove_sink(sink)
        self._forget_if_empty(state)

    def attach_source(self, route: Route, msg_type: type[Message], source: Source) -> RouteState:
        """Attach a remote source (a peer's intent) so that it feeds the local subscribers."""
        self._check_open()
        bound = route.bind(msg_type)
        state = self._state_for(bound, msg_type)
        state.add_intent(source)
        return state

    def detach_source(self, state: RouteState, source: Source) -> None:
        """Detach a source attached with :meth:`attach_source` (idempotent)."""
        state.remove_intent(source)

    # -- keeping the invariants --------------------------------------------------------------------

    def _state_for(self, route: Route, msg_type: type[Message]) -> RouteState:
        """The state of ``route``, created (and attached to its pattern interests) if needed."""
        state = self._routes.get(route.id)
        if state is not None:
            if state.msg_type is not msg_type:
                raise TypeMismatch(
                    f"route {route} is already declared with class "
                    f"{state.msg_type.__module__}.{state.msg_type.__qualname__}, "
                    f"not {msg_type.__module__}.{msg_type.__qualname__}"
                )
            return state
        state = RouteState(route, msg_type, self._source_removed)
        self._routes[route.id] = state
        if isinstance(route, PlainRoute):
            for interest in self._patterns.get(route.type_name, {}).values():
                if interest.pattern is not None and _pattern_matches(
                    route, route.type_name, interest.pattern
                ):
                    state.add_sink(interest.queue, exact=False)
        return state

    def _source_removed(self, state: RouteState, source: Source) -> None:
        """A source left ``state``: tell the observers if it was a local intent, and drop the
        state if nothing holds it any more."""
        if isinstance(source, Intent):
            self._notify_withdrawn(source)
        self._forget_if_empty(state)

    def _forget_if_empty(self, state: RouteState) -> None:
        """Drop a route state that no source or exact subscriber holds any more."""
        if state.empty and self._routes.get(state.route.id) is state:
            del self._routes[state.route.id]
            for sink in list(state.patterned.values()):
                state.remove_sink(sink)

    def _remove_interest(self, interest: Interest[Any]) -> None:
        """Detach a closing interest from every route it is attached to (its unregister)."""
        if self._interests.pop(interest.handle_id, None) is not None:
            self._notify_withdrawn(interest)
        sink = interest.queue
        if interest.pattern is not None:
            type_name = message_full_name(interest.msg_type)
            patterns = self._patterns.get(type_name)
            if patterns is not None:
                patterns.pop(interest.handle_id, None)
                if not patterns:
                    del self._patterns[type_name]
            for state in list(self._routes.values()):
                if id(sink) in state.patterned:
                    state.remove_sink(sink)
        elif interest.route is not None:
            exact_state = self._routes.get(interest.route.id)
            if exact_state is not None:
                exact_state.remove_sink(sink)
                self._forget_if_empty(exact_state)

    def _notify_withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        for observer in list(self._observers):
            observer.withdrawn(handle)


def _pattern_matches(route: Route, type_name: str, pattern: Pattern) -> bool:
    return (
        isinstance(route, PlainRoute)
        and route.type_name == type_name
        and pattern.matches(route.segments)
    )
