"""The node's registry of data links that outlive a session: reliable links, parked and resumed.

A reliable link is keyed by its peer, route and link id.  When its subscriber goes away, the
publisher's side (:class:`~dndm_p2p.node.outbound.OutboundLink`) is *parked* for
``config.reliable_grace`` seconds: a ``LinkOpen`` with the same key within that time resumes it
where it stopped, and after it the link is dropped.  Our reliable subscriptions
(:class:`~dndm_p2p.node.inbound.InboundLink`) are kept by peer and route, so that a new session
with the peer resumes them.  Unreliable links are made anew for every stream.

Each node start draws a random 64-bit *incarnation*, sent in the hello.  A peer's hello with
the incarnation last seen from it is a reconnection: its reliable links resume.  One with
another incarnation is a restart: every link state kept for the old process (parked reliable
links to our routes, resume points of our subscriptions) is dropped before the new process
links, so both sides start afresh, and the node emits ``peer_restarted`` (a reconnection:
``peer_reconnected``).

The registry also decides what this node offers its peers (its capabilities), validates
the ``LinkOpen`` frames peers send, and applies each route's
:class:`~dndm_p2p.node.slow_subscribers.SlowSubscriberPolicy` to the links it makes: it
watches them, counts what they dropped, and reports every evicted subscriber (a
``subscriber_evicted`` node event, with a :class:`~dndm_p2p.errors.SlowSubscriber` error).
A new link of a peer is reserved in the node's
:class:`~dndm_p2p.node.resources.ResourceManager` first (one ``links`` unit, its queue depth in
``queue_slots``, the depth clamped to ``limits.link_depth``); the link releases it when detached.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence

import trio
from google.protobuf.message import Message

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import qos_from_wire
from dndm_p2p.core.qos import QoS, SlowSubscriberMode
from dndm_p2p.core.route import Route, parse_route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import ConfigError, DndmError, LinkReset, ProtocolError, SlowSubscriber
from dndm_p2p.node.inbound import InboundLink
from dndm_p2p.node.outbound import OutboundLink
from dndm_p2p.node.resources import ResourceManager
from dndm_p2p.node.slow_subscribers import SlowSubscriberPolicy, SlowSubscriberStats
from dndm_p2p.node.types import NodeEvent
from protocols import compression
from protocols.v1 import common_pb2, data_pb2

__all__ = ["LinkRegistry"]

_link_ids = itertools.count(1)

#: A reliable link's key: (peer, route id, link id).
_LinkKey = tuple[str, str, int]


class LinkRegistry:
    """The data links of one node that outlive a session (see the module docstring).

    ``closing`` tells whether the node is closing: from then on no link is parked.
    """

    def __init__(
        self,
        router: Router,
        config: NodeConfig,
        closing: Callable[[], bool],
        emit: Callable[[NodeEvent], None] | None = None,
        resources: ResourceManager | None = None,
    ) -> None:
        self._router = router
        self._emit = emit
        self._config = config
        self._closing = closing
        self._resources = resources or ResourceManager(config.limits)
        self.compressions = compression.available() if config.compression else []
        #: Reliable links to our routes, kept across their subscriber's reconnections.
        self._reliable_out: dict[_LinkKey, OutboundLink] = {}
        #: Timers of reliable links whose subscriber is away.
        self._parked: dict[_LinkKey, trio.CancelScope] = {}
        #: Our reliable subscriptions, kept across reconnections so they resume.
        self._reliable_in: dict[tuple[str, str], InboundLink] = {}
        self._nursery: trio.Nursery | None = None
        #: The publisher's policy of each route that has one (else the config's defaults).
        self._policies: dict[str, SlowSubscriberPolicy] = {}
        self._default_policy = SlowSubscriberPolicy(
            config.slow_subscriber,
            config.slow_subscriber_deadline,
            config.link_queue_depth,
            config.reliable_link_depth,
        )
        #: This node's incarnation: drawn at every start, never 0.
        self.incarnation = secrets.randbits(64) or 1
        #: The last incarnation seen from each peer, least recently seen first.
        self._incarnations: OrderedDict[str, int] = OrderedDict()
        self._stats = SlowSubscriberStats()
        #: Unreliable links still attached, whose drops are not yet in ``_stats``.
        self._live: set[OutboundLink] = set()

    def start(self, nursery: trio.Nursery) -> None:
        """Run the parked links' timers in ``nursery`` from now on."""
        self._nursery = nursery

    def close(self) -> None:
        """Drop every parked and reliable link (the node is closing)."""
        self._nursery = None
        for scope in self._parked.values():
            scope.cancel()
        self._parked.clear()
        for link in self._reliable_out.values():
            link.detach()
        self._reliable_out.clear()

    # -- incarnations --------------------------------------------------------------------------

    def peer_hello(self, peer: str, incarnation: int) -> str:
        """``peer`` sent a hello with ``incarnation``: say whether it is ``"new"`` (not seen
        before, or a peer too old to send one: 0), ``"reconnected"`` (same incarnation) or
        ``"restarted"`` (another one).  A restart drops every link state kept for the peer's
        old process, at once, so that nothing of it is resumed by the new one."""
        if not incarnation:
            return "new"
        previous = self._incarnations.pop(peer, None)
        self._incarnations[peer] = incarnation
        while len(self._incarnations) > self._config.remembered_incarnations:
            self._incarnations.popitem(last=False)
        if previous is None:
            return "new"
        if previous == incarnation:
            if self._emit is not None:
                self._emit(
                    NodeEvent("peer_reconnected", peer, "same incarnation: reliable links resume")
                )
            return "reconnected"
        dropped = self._forget_peer_links(peer)
        if self._emit is not None:
            self._emit(
                NodeEvent(
                    "peer_restarted",
                    peer,
                    f"incarnation {previous:016x} gave way to {incarnation:016x}; "
                    f"{dropped} link state(s) of the old process dropped",
                )
            )
        return "restarted"

    def _forget_peer_links(self, peer: str) -> int:
        """Drop the reliable link state kept for ``peer``; return how many links had some."""
        dropped = 0
        for key, link in list(self._reliable_out.items()):
            if key[0] == peer:
                del self._reliable_out[key]
                timer = self._parked.pop(key, None)
                if timer is not None:
                    timer.cancel()
                link.detach()
                dropped += 1
        for in_key, inbound in list(self._reliable_in.items()):
            if in_key[0] == peer:
                del self._reliable_in[in_key]
                inbound.stale = True
                dropped += 1
        return dropped

    # -- what a slow subscriber gets ----------------------------------------------------------

    def make_policy(
        self, mode: SlowSubscriberMode | str | None = None, deadline: float | None = None
    ) -> SlowSubscriberPolicy:
        """A policy with ``mode`` and ``deadline`` (``None``: the node's default); raises
        :class:`~dndm_p2p.errors.ConfigError` for a bad value."""
        default = self._default_policy
        if mode is not None and mode not in tuple(SlowSubscriberMode):
            choices = ", ".join(repr(m.value) for m in SlowSubscriberMode)
            raise ConfigError(f"slow_subscriber must be one of {choices}, not {mode!r}")
        return SlowSubscriberPolicy(
            default.mode if mode is None else SlowSubscriberMode(mode),
            default.deadline if deadline is None else deadline,
            default.queue_depth,
            default.reliable_depth,
        )

    def set_policy(self, route: Route, policy: SlowSubscriberPolicy) -> None:
        """Make ``policy`` the treatment of ``route``'s future remote links."""
        self._policies[route.id] = policy

    def policy_for(self, route: Route) -> SlowSubscriberPolicy:
        """The policy of ``route``'s remote links."""
        return self._policies.get(route.id, self._default_policy)

    def slow_subscriber_stats(self) -> SlowSubscriberStats:
        """A snapshot of the node's counters of lagging remote subscribers."""
        live = sum(link.queue.dropped for link in self._live)
        stats = self._stats
        return SlowSubscriberStats(stats.dropped + live, stats.evicted, stats.reliable_given_up)

    def _retire(self, link: OutboundLink) -> None:
        """``link`` is detached for good: move its drops into the counters."""
        if link in self._live:
            self._live.discard(link)
            self._stats.dropped += link.queue.dropped

    def _given_up(self, link: OutboundLink, error: SlowSubscriber) -> None:
        """``link`` evicted its subscriber: forget it, count it, tell the application."""
        key = (link.peer, link.route.id, link.link_id)
        if self._reliable_out.get(key) is link:
            del self._reliable_out[key]
        timer = self._parked.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._retire(link)
        if link.reliable:
            self._stats.reliable_given_up += 1
        else:
            self._stats.evicted += 1
        if self._emit is not None:
            self._emit(NodeEvent("subscriber_evicted", link.peer, str(error), error))

    def capabilities(self) -> common_pb2.Capabilities:
        """What this node offers its peers."""
        return common_pb2.Capabilities(
            compression=self.compressions,
            reliability=True,
            max_frame_size=self._config.max_frame_size,
            max_batch_messages=4096,
        )

    def inbound_link(
        self, peer: str, route: Route, msg_type: type[Message], qos: QoS, offered: Sequence[int]
    ) -> InboundLink:
        """The link for a subscription of ours to ``route`` at ``peer`` (which offers the
        compressions ``offered``): a reliable one of the same type resumes, with ``qos``."""
        key = (peer, route.id)
        if qos.reliable:
            existing = self._reliable_in.get(key)
            if existing is not None and existing.msg_type is msg_type and not existing.stale:
                existing.qos = qos
                return existing
        link = InboundLink(
            self._router,
            route,
            msg_type,
            peer,
            next(_link_ids),
            qos,
            compression_choice=compression.negotiate(self.compressions, list(offered)),
            max_frame_size=self._config.max_frame_size,
        )
        if qos.reliable:
            self._reliable_in[key] = link
        return link

    def outbound_link(self, peer: str, opening: data_pb2.LinkOpen) -> OutboundLink:
        """Accept ``peer``'s LinkOpen: a new link (attached to the router), or the parked
        reliable link it resumes.  Raises :class:`ProtocolError` for an invalid opening."""
        try:
            route = parse_route(opening.route)
        except DndmError as exc:
            raise ProtocolError(f"LinkOpen has an invalid route: {exc}") from None
        if opening.chosen not in (common_pb2.COMPRESSION_NONE, *self.compressions):
            raise ProtocolError(f"LinkOpen chose compression {opening.chosen}, not offered")
        if not 0 < opening.initial_credit <= 1 << 20:
            raise ProtocolError(f"LinkOpen grants {opening.initial_credit} credit")
        key = (peer, route.id, opening.link_id)
        existing = self._reliable_out.get(key)
        if existing is not None and not existing.queue.closed:
            timer = self._parked.pop(key, None)
            if timer is not None:
                timer.cancel()
            return existing
        if opening.resume_after:
            raise LinkReset(
                f"no state to resume link {opening.link_id} on {route} after "
                f"{opening.resume_after}: open a new link",
                peer=peer,
                route=str(route),
            )
        policy = self.policy_for(route)
        resources = self._resources
        depth = resources.clamp_depth(qos_from_wire(opening.qos).depth)
        resources.reserve(peer, "links", 1, "links")
        try:
            resources.reserve(peer, "queue_slots", depth, "queue_slots")
        except DndmError:
            resources.release(peer, "links", 1, "links")
            raise
        link = OutboundLink(
            self._router,
            route,
            peer,
            opening,
            policy=policy,
            message_ttl=self._config.message_ttl,
            max_frame_size=self._config.max_frame_size,
            on_give_up=self._given_up,
            depth=depth,
            account=resources.account(peer),
            queue_bytes=self._config.limits.link_queue_bytes,
        )
        try:
            link.attach()
        except BaseException:
            link.detach()
            raise
        if link.reliable:
            self._reliable_out[key] = link
        else:
            self._live.add(link)
        if (link.reliable or policy.mode is SlowSubscriberMode.EVICT) and self._nursery:
            self._nursery.start_soon(link.watch)
        return link

    def link_stream_ended(self, link: OutboundLink) -> None:
        """A stream of ``link`` ended: drop the link, or park a reliable one for its return."""
        key = (link.peer, link.route.id, link.link_id)
        if not link.reliable or link.queue.closed or self._closing() or self._nursery is None:
            if self._reliable_out.get(key) is link:
                del self._reliable_out[key]
            link.detach()
            self._retire(link)
            return
        if link.serving or key in self._parked:
            return  # a newer stream took it over, or its timer already runs
        scope = trio.CancelScope()
        self._parked[key] = scope
        self._nursery.start_soon(self._expire_parked, link, key, scope)

    async def _expire_parked(
        self, link: OutboundLink, key: _LinkKey, scope: trio.CancelScope
    ) -> None:
        with scope:
            await trio.sleep(self._config.reliable_grace)
        if scope.cancelled_caught:
            return
        if self._parked.get(key) is scope:
            del self._parked[key]
        if not link.serving:
            if self._reliable_out.get(key) is link:
                del self._reliable_out[key]
            link.detach()

    def forget_route(self, route: Route) -> None:
        """The last local intent on ``route`` closed: drop its reliable links, parked or not,
        and its policy."""
        self._policies.pop(route.id, None)
        for key, link in list(self._reliable_out.items()):
            if link.route == route:
                del self._reliable_out[key]
                timer = self._parked.pop(key, None)
                if timer is not None:
                    timer.cancel()
                link.detach()
