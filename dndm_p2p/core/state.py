"""The state of one route: its sources, and the sinks every one of its local sources delivers to.

One :class:`RouteState` exists per route that has at least one source or exact subscriber (the
route table, :mod:`dndm_p2p.core.lowlevel`, creates and drops them).  Links are kept *at
declaration time*, never per message: attaching a sink appends it to the state's sink tuples
and links it with every source there; detaching removes it at once.  Sending is then a loop
over a tuple.

Invariants kept here, by doing every change synchronously in the trio thread:

* ``sinks`` is exactly the attached sinks (``exact`` then ``patterned``), ``blocking_sinks``
  those with the ``block`` policy, ``local_sinks`` and ``local_blocking_sinks`` the same for
  sinks in this process; the tuples are rebuilt on every attach and detach;
* every source's tracker holds exactly the ``link`` of each sink it may deliver to, and every
  sink's tracker the ``link`` of each source that may deliver to it.  A source and a sink may
  be linked unless both are remote: messages travel one hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import Message

from dndm_p2p.core.links import LinkInfo, LinkTracker
from dndm_p2p.core.queue import Sink
from dndm_p2p.core.route import Route

__all__ = ["RouteState", "Source", "SourceRemoved"]


class Source(Protocol):
    """Something that feeds a route: a local intent, or the node's inbound remote link.

    A remote source (``link.peer`` set) delivers to local sinks only: messages travel one hop.
    """

    link: LinkInfo
    tracker: LinkTracker


#: Told, after a source was unlinked from a state, so that the state's owner can drop the state
#: once nothing holds it (and tell whoever watches local sources).
SourceRemoved = Callable[["RouteState", Source], None]


def _linkable(source: Source, sink: Sink[Any]) -> bool:
    return source.link.peer is None or sink.link.peer is None


class RouteState:
    """The sources of one route and the sinks they deliver to (see the module docstring)."""

    __slots__ = (
        "_on_source_removed",
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

    def __init__(
        self, route: Route, msg_type: type[Message], on_source_removed: SourceRemoved
    ) -> None:
        """A state with no source and no sink; ``on_source_removed`` follows every removal."""
        self._on_source_removed = on_source_removed
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
        """Unlink a source from every sink, then tell the owner (idempotent)."""
        if self.intents.pop(id(source), None) is None:
            return
        for sink in self.sinks:
            sink.tracker.remove(source.link)
        self._on_source_removed(self, source)

    def add_sink(self, sink: Sink[Any], *, exact: bool) -> None:
        """Attach a subscriber and link it with every source that may deliver to it."""
        (self.exact if exact else self.patterned)[id(sink)] = sink
        self._rebuild()
        for source in self.intents.values():
            if _linkable(source, sink):
                source.tracker.add(sink.link)
                sink.tracker.add(source.link)

    def remove_sink(self, sink: Sink[Any]) -> None:
        """Detach a subscriber and unlink it from every source (idempotent)."""
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
