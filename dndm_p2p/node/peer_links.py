"""The data links of one connected peer, both ways.

For every route the peer publishes and some local interest wants, one
:class:`~dndm_p2p.node.inbound.InboundLink` on its own ``/dndm/data/1.0.0`` stream (we
subscribe).  Discovering the same route twice never opens a second link; a withdrawn intent or
a closed interest closes it; a link that fails is tried again later, backing off to ten
seconds.  The peer's links to us (:class:`~dndm_p2p.node.outbound.OutboundLink`) arrive as
streams it opens, each validated by its first frame, a ``LinkOpen``.  Each such stream holds,
while it is served, one ``streams`` unit and ``limits.subscriber_frame_size`` bytes of
``partial_frames`` memory in the node's resource manager: frames in that direction (the
opening, acks, results) are small, and no larger one is read.

Every task of a peer's links runs in its session's nursery, so they all end with the session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio
from google.protobuf.message import Message
from libp2p.custom_types import TProtocol

from dndm_p2p.config import NodeConfig
from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.core.qos import Overflow, QoS
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import (
    Closed,
    ConnectionLost,
    DndmError,
    LinkReset,
    ProtocolError,
    ResourceLimitExceeded,
    SlowSubscriber,
    UnknownRoute,
)
from dndm_p2p.node.best_effort import (
    drain_quietly,
    end_stream_quietly,
    reset_quietly,
    write_quietly,
)
from dndm_p2p.node.inbound import InboundLink
from dndm_p2p.node.outbound import OutboundLink
from dndm_p2p.node.resources import ResourceManager
from dndm_p2p.node.results import data_result
from dndm_p2p.node.streamio import data_stream
from dndm_p2p.node.types import PeerStats
from protocols.framing import ByteStream, FrameReader, FrameWriter, read_message
from protocols.ids import DATA_PROTOCOL_ID, MAX_FRAME_SIZE
from protocols.v1 import control_pb2, data_pb2, result_pb2

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetStream
    from libp2p.peer.id import ID

__all__ = ["LinkHost", "PeerLinks"]


class LinkHost(Protocol):
    """What a peer's data links ask of the node they run in."""

    @property
    def config(self) -> NodeConfig:
        """The node's configuration (``handshake_timeout``)."""
        ...

    @property
    def host(self) -> IHost:
        """The libp2p host that opens our data streams."""
        ...

    @property
    def closing(self) -> bool:
        """True once the node has started to close."""
        ...

    @property
    def resources(self) -> ResourceManager:
        """The node's resource manager, where the peer's streams and links are reserved."""
        ...

    def report_error(self, error: DndmError, *, peer: str | None = None) -> None:
        """Record an error of background work."""
        ...

    def inbound_link(
        self,
        peer: str,
        route: Route,
        msg_type: type[Message],
        qos: QoS,
        offered: Sequence[int],
    ) -> InboundLink:
        """The link for a subscription of ours to ``route`` at ``peer``, which offers the
        compressions ``offered`` (a reliable link is resumed, not made anew)."""
        ...

    def outbound_link(self, peer: str, opening: data_pb2.LinkOpen) -> OutboundLink:
        """Accept ``peer``'s LinkOpen: a new link, or the reliable link it resumes; raises
        :class:`ProtocolError` for an opening this node cannot accept."""
        ...

    def link_stream_ended(self, link: OutboundLink) -> None:
        """A stream serving ``link`` ended."""
        ...


class PeerLinks:
    """The data links to and from one peer (see the module docstring).

    ``remote_intents`` is the session's table of the peer's intents (read, never written);
    links open only once ``ready`` is set (the peer's hello arrived) and while a nursery is
    given (the session runs).  ``is_moving`` tells whether the session's connection is giving
    way to another one, which makes a lost link no error.
    """

    def __init__(
        self,
        host: LinkHost,
        router: Router,
        peer_id: ID,
        stats: PeerStats,
        *,
        remote_intents: Mapping[int, RemoteAdvert],
        ready: trio.Event,
        is_moving: Callable[[], bool],
    ) -> None:
        self._host = host
        self._router = router
        self.peer_id = peer_id
        self.peer = str(peer_id)
        self._stats = stats
        self._remote_intents = remote_intents
        self._ready = ready
        self._is_moving = is_moving
        #: The compressions the peer offers (wire values), once its hello told them.
        self.offered: Sequence[int] = ()
        #: Our subscriptions to the peer's routes, by route id: (link, its cancel scope).
        self.inbound: dict[str, tuple[InboundLink, trio.CancelScope]] = {}
        #: The peer's subscriptions to our routes.
        self.outbound: set[OutboundLink] = set()
        #: Data streams the peer opened that are still being served (links or not yet).
        self.pending_data_streams = 0
        self._link_failures: dict[str, int] = {}
        self._links_changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Run the links' tasks in ``nursery`` (the session's) from now on."""
        self._nursery = nursery

    def release(self) -> bool:
        """The session ended: close our links, let the peer's unreliable ones go (reliable ones
        stay with the node for the peer's return).  Returns whether there were any links."""
        self._nursery = None
        had_links = bool(self.inbound or self.outbound)
        for link, scope in self.inbound.values():
            scope.cancel()
            link.detach()
        self.inbound.clear()
        for out in list(self.outbound):
            if not out.reliable:
                out.detach()
        self.outbound.clear()
        return had_links

    def leave(self) -> None:
        """Close our links in good order: each tells its publisher that we leave."""
        for _, scope in self.inbound.values():
            scope.cancel()

    async def wait_closed(self) -> None:
        """Wait until none of our links is left."""
        while self.inbound:
            await self._links_changed.wait()

    # -- data links we open (we subscribe to the peer's routes) -----------------------------------

    def wanted_links(self) -> dict[str, tuple[Route, type[Message], QoS]]:
        """Routes the peer publishes that a local interest wants, with the link's type and QoS."""
        wanted: dict[str, tuple[Route, type[Message], QoS]] = {}
        for advert in self._remote_intents.values():
            route = advert.route
            if route is None or route.id in wanted:
                continue
            interests = self._router.lowlevel.matching_interests(route)
            if interests:
                wanted[route.id] = (route, interests[0].msg_type, _link_qos(interests))
        return wanted

    def reconcile(self) -> None:
        """Open the links we need and close the ones we no longer need (idempotent)."""
        if self._nursery is None or not self._ready.is_set():
            return
        wanted = self.wanted_links()
        for route_id in list(self.inbound):
            if route_id not in wanted:
                link, scope = self.inbound.pop(route_id)
                scope.cancel()
                link.detach()
        for route_id, (route, msg_type, qos) in wanted.items():
            if route_id not in self.inbound:
                link = self._host.inbound_link(self.peer, route, msg_type, qos, self.offered)
                scope = trio.CancelScope()
                self.inbound[route_id] = (link, scope)
                self._nursery.start_soon(self._run_inbound, link, scope)

    async def _run_inbound(self, link: InboundLink, scope: trio.CancelScope) -> None:
        host = self._host
        failed = False
        with scope:
            try:
                stream = await host.host.new_stream(self.peer_id, [TProtocol(DATA_PROTOCOL_ID)])
            except Exception as exc:  # a failed negotiation; the session decides what next
                host.report_error(
                    ConnectionLost(f"could not open a data stream to {self.peer}: {exc}"),
                    peer=self.peer,
                )
                self._forget_inbound(link, failed=True)
                return
            self._stats.links_opened += 1
            io = data_stream(stream)
            reader = FrameReader(io, MAX_FRAME_SIZE)
            writer = FrameWriter(io, MAX_FRAME_SIZE)
            try:
                await link.serve(reader, writer)
            except UnknownRoute as exc:
                # The peer withdrew the intent while we were opening: its advert follows.
                host.report_error(exc, peer=self.peer)
                failed = True
            except ProtocolError as exc:
                self._stats.protocol_errors += 1
                host.report_error(exc, peer=self.peer)
                failed = True
                with trio.move_on_after(1):
                    await write_quietly(writer, data_result(exc, link_id=link.link_id))
            except DndmError as exc:  # connection lost, or the publisher refused the link
                if not (isinstance(exc, ConnectionLost) and self._is_moving()):
                    # (A relayed connection giving way to a direct one is no error: the link
                    # resumes on the new session.)
                    host.report_error(exc, peer=self.peer)
                failed = True
            finally:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(1):
                        # Leaving on purpose (unsubscribed, or this node is closing): say so,
                        # so a reliable publisher lets the link go at once instead of keeping
                        # it for the subscriber's return.
                        leaving = scope.cancel_called or host.closing
                        if leaving and not writer.broken:
                            await write_quietly(
                                writer,
                                data_result(
                                    result_pb2.Result.CLOSED, "unsubscribed", link_id=link.link_id
                                ),
                            )
                            # Wait (briefly) for the publisher to close its side: then it has
                            # processed the CLOSED before our connection can go away.
                            await drain_quietly(reader)
                    # Under its own bound: a publisher that never closes its side must not
                    # leave our side open too.
                    with trio.move_on_after(1):
                        await end_stream_quietly(stream, writer)
        self._forget_inbound(link, failed=failed and not scope.cancel_called)

    def _forget_inbound(self, link: InboundLink, *, failed: bool = False) -> None:
        entry = self.inbound.get(link.route.id)
        if entry is not None and entry[0] is link:
            del self.inbound[link.route.id]
            self._links_changed.set()
            self._links_changed = trio.Event()
        if failed and self._nursery is not None:
            # Try again later (a link that keeps failing backs off to ten seconds).
            failures = self._link_failures.get(link.route.id, 0) + 1
            self._link_failures[link.route.id] = failures
            self._nursery.start_soon(self._reconcile_later, min(10.0, 0.1 * 2**failures))
        else:
            self._link_failures.pop(link.route.id, None)

    async def _reconcile_later(self, delay: float) -> None:
        await trio.sleep(delay)
        self.reconcile()

    # -- data links the peer opens (it subscribes to our routes) ----------------------------------

    def accept(self, stream: INetStream) -> bool:
        """Serve a data stream the peer opened, unless the peer already has
        ``config.max_links_per_peer`` of them being served (then False, and the stream is left
        to the caller).  Raises :class:`Closed` when the session does not run, and
        :class:`ResourceLimitExceeded` when the resource manager refuses the stream (nothing is
        reserved or started then)."""
        if self._nursery is None:
            raise Closed(f"session with {self.peer} is not running")
        if self.pending_data_streams >= self._host.config.max_links_per_peer:
            return False
        resources = self._host.resources
        frame_size = self._host.config.limits.subscriber_frame_size
        resources.reserve(self.peer, "streams", 1, "streams")
        try:
            resources.reserve(self.peer, "memory", frame_size, "partial_frames")
        except ResourceLimitExceeded:
            resources.release(self.peer, "streams", 1, "streams")
            raise
        self.pending_data_streams += 1
        self._nursery.start_soon(self.serve_data, stream)
        return True

    async def serve_data(self, stream: INetStream) -> None:
        """Serve a data stream the peer opened (accepted by :meth:`accept`, whose
        reservations this releases): validate its LinkOpen, then feed the link."""
        host = self._host
        io = data_stream(stream)
        frame_size = host.config.limits.subscriber_frame_size
        reader = FrameReader(io, frame_size)
        writer = FrameWriter(io, MAX_FRAME_SIZE)
        link: OutboundLink | None = None
        link_id = nonce = 0
        refused = False
        try:
            frame = await self._read_link_open(reader)
            opening = frame.open
            link_id, nonce = opening.link_id, frame.header.sequence
            # The peer's hello says whether it restarted; only then can its LinkOpen be
            # matched with the link state kept for it.
            with trio.move_on_after(host.config.handshake_timeout):
                await self._ready.wait()
            if not self._ready.is_set():
                raise ProtocolError(f"{self.peer} opened a link but sent no hello")
            link = host.outbound_link(self.peer, opening)
            self.outbound.add(link)
            await link.serve(reader, writer, opening)
            if link.queue.closed and not writer.broken:
                await writer.write_frames(
                    [data_result(result_pb2.Result.CLOSED, "intent withdrawn", link_id=link_id)]
                )
        except (SlowSubscriber, LinkReset) as exc:
            # The subscriber is told why its link ends (a stalled one may never read it); the
            # application was told of an eviction when it happened.
            if not writer.broken:
                with trio.move_on_after(1):
                    await write_quietly(writer, data_result(exc, link_id=link_id, nonce=nonce))
        except DndmError as exc:
            if isinstance(exc, ProtocolError | ResourceLimitExceeded):
                if isinstance(exc, ProtocolError):
                    self._stats.protocol_errors += 1
                refused = True
                with trio.move_on_after(1):
                    await write_quietly(writer, data_result(exc, link_id=link_id, nonce=nonce))
            host.report_error(exc, peer=self.peer)
        finally:
            self.pending_data_streams -= 1
            host.resources.release(self.peer, "streams", 1, "streams")
            host.resources.release(self.peer, "memory", frame_size, "partial_frames")
            if link is not None:
                self.outbound.discard(link)
                host.link_stream_ended(link)
            with trio.CancelScope(shield=True):
                # A stream whose frame a failed write cut is reset, never closed (see
                # end_stream_quietly).  What the peer still sends on a refused stream is read
                # and dropped until it ends its side (at most a second), then the stream is
                # ended; a peer that keeps sending gets it reset, so nothing of it stays
                # buffered.
                ended = True
                if refused:
                    ended = False
                    with trio.move_on_after(1):
                        ended = await _discard_until_end(io)
                with trio.move_on_after(1):
                    if ended:
                        await end_stream_quietly(stream, writer)
                    else:
                        await reset_quietly(stream)

    async def _read_link_open(self, reader: FrameReader) -> control_pb2.DataFrame:
        timeout = self._host.config.handshake_timeout
        frame = None
        with trio.move_on_after(timeout):
            frame = await read_message(reader, control_pb2.DataFrame)
            if frame is None:
                raise ConnectionLost(f"{self.peer} closed a data stream before opening a link")
        if frame is None:
            raise ProtocolError(f"{self.peer} opened a data stream but no link within {timeout} s")
        kind = frame.WhichOneof("body")
        if kind != "open":
            raise ProtocolError(f"a data stream must start with LinkOpen, not {kind!r}")
        return frame

    # -- introspection ----------------------------------------------------------------------------

    def linked_routes(self) -> list[str]:
        """Route strings linked with this peer, both ways."""
        routes = {str(link.route) for link, _ in self.inbound.values()}
        routes.update(str(link.route) for link in self.outbound)
        return sorted(routes)


async def _discard_until_end(stream: ByteStream) -> bool:
    """Read and drop what ``stream`` carries until it ends (True) or breaks (False)."""
    for _ in range(1 << 20):
        try:
            if not await stream.read(65536):
                return True
        except EOFError:  # py-libp2p's StreamEOF
            return True
        except Exception:  # a broken stream: nothing more will come
            return False
    return False


def _link_qos(interests: list[Any]) -> QoS:
    """One link serves every local interest on a route: the strongest settings win."""
    depth = max(i.qos.depth for i in interests)
    overflows = {i.qos.overflow for i in interests}
    if Overflow.BLOCK in overflows:
        overflow = Overflow.BLOCK
    elif Overflow.DROP_OLDEST in overflows:
        overflow = Overflow.DROP_OLDEST
    else:
        overflow = Overflow.DROP_NEWEST
    return QoS(depth, overflow, any(i.qos.reliable for i in interests))
