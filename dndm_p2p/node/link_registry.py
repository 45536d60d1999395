"""The node's registry of data links that outlive a session: reliable links, parked and resumed.

A reliable link is keyed by its peer, route and link id.  When its subscriber goes away, the
publisher's side (:class:`~dndm_p2p.node.outbound.OutboundLink`) is *parked* for
``config.reliable_grace`` seconds: a ``LinkOpen`` with the same key within that time resumes it
where it stopped, and after it the link is dropped.  Our reliable subscriptions
(:class:`~dndm_p2p.node.inbound.InboundLink`) are kept by peer and route, so that a new session
with the peer resumes them.  Unreliable links are made anew for every stream.

The registry also decides what this node offers its peers (its capabilities) and validates
the ``LinkOpen`` frames peers send.  A new link of a peer is reserved in the node's
:class:`~dndm_p2p.node.resources.ResourceManager` first (one ``links`` unit, its queue depth in
``queue_slots``, the depth clamped to ``limits.link_depth``); the link releases it when detached.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import trio
from google.protobuf.message import Message

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import qos_from_wire
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.route import Route, parse_route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import DndmError, ProtocolError
from dndm_p2p.node.inbound import InboundLink
from dndm_p2p.node.outbound import OutboundLink
from dndm_p2p.node.resources import ResourceManager
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
        resources: ResourceManager | None = None,
    ) -> None:
        self._router = router
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
            if existing is not None and existing.msg_type is msg_type:
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
            message_ttl=self._config.message_ttl,
            max_frame_size=self._config.max_frame_size,
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
        return link

    def link_stream_ended(self, link: OutboundLink) -> None:
        """A stream of ``link`` ended: drop the link, or park a reliable one for its return."""
        key = (link.peer, link.route.id, link.link_id)
        if not link.reliable or link.queue.closed or self._closing() or self._nursery is None:
            if self._reliable_out.get(key) is link:
                del self._reliable_out[key]
            link.detach()
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
        """The last local intent on ``route`` closed: drop its reliable links, parked or not."""
        for key, link in list(self._reliable_out.items()):
            if link.route == route:
                del self._reliable_out[key]
                timer = self._parked.pop(key, None)
                if timer is not None:
                    timer.cancel()
                link.detach()
