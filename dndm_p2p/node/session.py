"""One connected peer: the control protocol, its adverts, and the data links to and from it.

Each side opens one control stream (``/dndm/ctl/1.0.0``) to the other and writes on it only; it
reads the one the peer opened.  The first frame each way is a ``Hello`` with the protocol
version, capabilities, and the sender's full current set of intents and interests (the Go
original never exchanged them); then batched register/unregister adverts, pings and pongs.

From the peer's adverts and our own interests the session's
:class:`~dndm_p2p.node.peer_links.PeerLinks` decides which data links it needs, and serves the
links the peer opens to us.

Everything the session starts lives in its nursery: when the session ends (the connection
broke, the peer stopped answering pings, or it sent garbage), every link of the peer closes with
it, and producers see their interest sets change at once.

What the peer makes the session hold is reserved in the node's resource manager: the frames
queued to it (``memory``/``control_queue``, at most ``limits.control_queue_bytes`` and
``limits.control_queue_frames``; a frame over the bound is not queued and the refusal counts
against the peer, so a peer that does not read its control stream is dropped) and the largest
control frame its stream may hold half-received (``memory``/``partial_frames``).  A ping whose
payload exceeds ``limits.ping_payload`` gets a ``RESOURCE_LIMIT_EXCEEDED`` Result, not a pong.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol, cast

import trio
from google.protobuf.message import Message
from libp2p.custom_types import TProtocol
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError

from dndm_p2p.core.adverts import RemoteAdvert, parse_advert
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.qos import QoS
from dndm_p2p.core.route import Route
from dndm_p2p.core.router import Router
from dndm_p2p.errors import (
    Closed,
    ConnectionLost,
    DndmError,
    ProtocolError,
    ResourceLimitExceeded,
    VersionMismatch,
)
from dndm_p2p.node.advert_expiry import AdvertExpiry
from dndm_p2p.node.best_effort import close_quietly, end_stream_quietly, reset_quietly
from dndm_p2p.node.control_admission import ControlAdmission
from dndm_p2p.node.control_outbox import ControlOutbox
from dndm_p2p.node.inbound import InboundLink
from dndm_p2p.node.outbound import OutboundLink, now_us
from dndm_p2p.node.peer_links import LinkHost, PeerLinks
from dndm_p2p.node.results import control_result, error_for
from dndm_p2p.node.types import PeerStats
from protocols.framing import FrameReader, FrameWriter, read_message
from protocols.ids import (
    CONTROL_PROTOCOL_ID,
    MAX_CONTROL_FRAME_SIZE,
    PROTOCOL_VERSION,
)
from protocols.v1 import (
    advert_pb2,
    common_pb2,
    control_pb2,
    hello_pb2,
    ping_pb2,
)

if TYPE_CHECKING:
    from libp2p.abc import INetStream
    from libp2p.peer.id import ID
    from trio_typing import TaskStatus  # py-libp2p installs trio-stubs, which mypy prefers

#: The session writes control batches at most ``control_rate / CONTROL_PACING`` times a second,
#: a third below the rate its peers admit by default.
CONTROL_PACING = 1.5

__all__ = ["PeerSession", "PeerStats", "SessionHost"]


class SessionHost(LinkHost, Protocol):
    """What a session asks of the node it runs in (besides what its links ask)."""

    @property
    def name(self) -> str:
        """This node's name, sent in the hello."""
        ...

    @property
    def router(self) -> Router:
        """The node's router: the local intents and interests."""
        ...

    @property
    def wanted_peers(self) -> frozenset[str]:
        """Peers the application or the configuration asked to keep connected."""
        ...

    def capabilities(self) -> common_pb2.Capabilities:
        """What this node offers its peers."""
        ...

    def advert(self, handle: Intent[Any] | Interest[Any], *, register: bool) -> advert_pb2.Advert:
        """The advert of a local handle, with the next sequence number."""
        ...

    @property
    def incarnation(self) -> int:
        """This node's incarnation, sent in the hello."""
        ...

    def peer_hello(self, peer: str, incarnation: int) -> str:
        """The peer's hello named ``incarnation``: ``"new"``, ``"reconnected"`` or
        ``"restarted"`` (its old process's link state is then dropped)."""
        ...

    def moving(self, session: PeerSession) -> bool:
        """True while ``session``'s relayed connection is giving way to a direct one."""
        ...

    def session_ended(self, session: PeerSession) -> None:
        """Called once by ``session`` as it ends."""
        ...


class PeerSession:
    """The control session with one peer, and every data link to and from it."""

    def __init__(self, node: SessionHost, peer_id: ID) -> None:
        self.node = node
        self.router: Router = node.router
        self.peer_id = peer_id
        self.peer = str(peer_id)
        self.stats = PeerStats()
        self.remote_name = ""
        self.remote_capabilities: common_pb2.Capabilities | None = None
        #: The peer's incarnation (0 until its hello, or from a peer that sends none).
        self.remote_incarnation = 0
        self.peer_start = ""
        #: The peer's intents and interests, by the peer's handle id.
        self.remote_intents: dict[int, RemoteAdvert] = {}
        self.remote_interests: dict[int, RemoteAdvert] = {}
        #: Deadlines of the peer's adverts that carry a TTL, by ``(is_intent, handle_id)``.
        self.advert_expiry = AdvertExpiry(node.config.max_advert_ttl, self._expire_adverts)
        self.hello_received = trio.Event()
        #: Set once a round-trip time has been measured.
        self.rtt_measured = trio.Event()
        self.ended = trio.Event()
        self.error: DndmError | None = None
        #: The data links to and from the peer.
        self.links = PeerLinks(
            node,
            self.router,
            peer_id,
            self.stats,
            remote_intents=self.remote_intents,
            ready=self.hello_received,
            is_moving=lambda: node.moving(self),
        )
        #: What waits to be written on our control stream.
        self.outbox = ControlOutbox(
            self.peer,
            node.config.limits,
            node.resources,
            node.report_error,
            min_interval=CONTROL_PACING / node.config.control_rate,
        )
        self._control_partial_reserved = 0
        self._pings: dict[int, int] = {}
        self._closing = False
        #: Whether the session had links when it ended (the node then reconnects).
        self.had_links = False
        self._serving_control = False
        self._last_heard = trio.current_time()
        self._nursery: trio.Nursery | None = None
        self._writer: FrameWriter | None = None
        self._ctl_stream: INetStream | None = None
        #: Refuses control requests over the peer's rate, and oversized pings.
        self._admission = ControlAdmission(
            self.peer, node.config, self.stats, node.resources, self._queue_frame, node.report_error
        )

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def inbound(self) -> dict[str, tuple[InboundLink, trio.CancelScope]]:
        """Our subscriptions to the peer's routes, by route id: (link, its cancel scope)."""
        return self.links.inbound

    @property
    def outbound(self) -> set[OutboundLink]:
        """The peer's subscriptions to our routes."""
        return self.links.outbound

    @property
    def not_dndm(self) -> bool:
        """True when the session failed before the peer's hello because the peer does not
        speak the DNDM control protocol (a libp2p node of another kind)."""
        return (
            self.error is not None
            and not self.hello_received.is_set()
            and _is_unsupported_protocol(self.error)
        )

    @property
    def running(self) -> bool:
        """True while the session runs."""
        return self._nursery is not None and not self.ended.is_set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until the peer goes away or the node closes.

        Errors that end the session are kept in :attr:`error` and reported through the node's
        events; they never escape into the node's nursery.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.links.start(nursery)
                task_status.started()
                nursery.start_soon(self._guarded, self._run_control_writer)
                nursery.start_soon(self._guarded, self._ping_loop)
                nursery.start_soon(self.advert_expiry.run)
        except Exception as exc:
            # A bug met while serving one peer ends that peer's session, not the node; it is
            # reported (with the original exception as its cause), never hidden.
            error = DndmError(f"internal error in the session with {self.peer}: {exc!r}")
            error.__cause__ = exc
            self.error = self.error or error
            self.node.report_error(error, peer=self.peer)
        finally:
            self._nursery = None
            resources = self.node.resources
            self.outbox.release()
            resources.release(self.peer, "memory", self._control_partial_reserved, "partial_frames")
            self._control_partial_reserved = 0
            resources.forget_peer(self.peer)
            self.had_links = self.links.release()
            self.ended.set()
            self.node.session_ended(self)

    def close(self, error: DndmError | None = None) -> None:
        """End the session (idempotent); ``error`` says why, if it failed."""
        if error is not None and self.error is None:
            self.error = error
            self.stats.errors.append(str(error))
            if not self.not_dndm:  # a foreign libp2p peer is no error (the node notes it)
                self.node.report_error(error, peer=self.peer)
        nursery = self._nursery
        if nursery is None:
            return
        if self.outbox.has_last_words() and not self._closing:
            # Let the writer deliver the Result that says why (at most one second).
            self._closing = True
            self.outbox.wake()
            nursery.start_soon(self._cancel_after, 1.0)
            return
        if error is None and self.inbound and not self._closing:
            # Leaving in good order: close our links first (each tells its publisher, which
            # then lets a reliable link go at once), and only then the control stream.
            self._closing = True
            self.links.leave()
            nursery.start_soon(self._cancel_when_links_closed, 1.0)
            return
        nursery.cancel_scope.cancel()

    def drop(self, error: ResourceLimitExceeded) -> None:
        """End the session because the peer keeps exceeding its limits: tell it why (one
        Result, outside the control queue's budget), then close."""
        if self._nursery is not None and self.error is None:
            self.outbox.queue_last_words(control_result(error))
        self.close(error)

    def abort(self) -> None:
        """End the session at once, without last words or closing links in good order."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _cancel_when_links_closed(self, limit: float) -> None:
        with trio.move_on_after(limit):
            await self.links.wait_closed()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _cancel_after(self, delay: float) -> None:
        await trio.sleep(delay)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _guarded(self, work: Callable[[], Any], *args: Any) -> None:
        """Run a session task; a failure ends the session with a recorded error."""
        try:
            await work(*args)
        except DndmError as exc:
            if isinstance(exc, ProtocolError):
                self.stats.protocol_errors += 1
            self.close(exc)

    # -- the control stream: writing --------------------------------------------------------------

    def _hello(self) -> control_pb2.ControlFrame:
        hello = hello_pb2.Hello(
            protocol_version=PROTOCOL_VERSION,
            node_name=self.node.name,
            capabilities=self.node.capabilities(),
            sent_us=now_us(),
            incarnation=self.node.incarnation,
        )
        for intent in self.router.intents():
            hello.intents.append(self.node.advert(intent, register=True))
        for interest in self.router.interests():
            hello.interests.append(self.node.advert(interest, register=True))
        return control_pb2.ControlFrame(hello=hello)

    def queue_advert(self, advert: advert_pb2.Advert) -> None:
        """Queue an advert; the writer sends queued adverts as one batch."""
        self.outbox.queue_advert(advert)

    def _queue_frame(self, frame: control_pb2.ControlFrame) -> bool:
        """Queue ``frame`` within the control queue's bounds; False when refused (see
        :meth:`ControlOutbox.queue_frame`)."""
        return self.outbox.queue_frame(frame)

    async def _run_control_writer(self) -> None:
        try:
            stream = await self.node.host.new_stream(self.peer_id, [TProtocol(CONTROL_PROTOCOL_ID)])
        except Exception as exc:  # py-libp2p raises assorted errors for a failed negotiation
            raise ConnectionLost(f"could not open a control stream to {self.peer}: {exc}") from exc
        self._ctl_stream = stream
        writer = FrameWriter(stream, MAX_CONTROL_FRAME_SIZE)
        self._writer = writer
        # The hello carries the full current set; adverts queued before it are in it.
        self.outbox.discard_adverts()
        await writer.write_message(self.outbox.stamped(self._hello()))
        try:
            while True:
                await self.outbox.write_next(writer)
                if self._closing and not self.outbox.has_last_words():
                    self.close()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                # Last words: a Result queued as the session failed (say, a version mismatch)
                # must reach the peer before the stream closes.
                await self.outbox.write_last_words(writer)
                await end_stream_quietly(stream, writer)

    def _watched(self) -> bool:
        """True when the peer's health matters: the session has links, the application asked
        for the peer, or its round-trip time is not known yet.  Other sessions (the many a DHT
        or a gossip mesh opens) send no pings: liveness costs nothing until it matters."""
        return bool(
            self.inbound
            or self.outbound
            or self.peer in self.node.wanted_peers
            or self.stats.rtt_us is None
        )

    async def _ping_loop(self) -> None:
        interval = self.node.config.ping_interval
        timeout = self.node.config.ping_timeout
        nonce = secrets.randbits(32)
        watched_since: float | None = None
        while True:
            await trio.sleep(interval)
            if not self._watched():
                watched_since = None
                continue
            now = trio.current_time()
            if watched_since is None:
                watched_since = now
            silent = now - max(self._last_heard, watched_since)
            if silent > timeout:
                raise ConnectionLost(f"{self.peer} has not answered for {silent:.1f} s")
            nonce += 1
            sent = now_us()
            self._pings[nonce] = sent
            if len(self._pings) > 16:
                self._pings.pop(next(iter(self._pings)))
            self.stats.pings_sent += 1
            self._queue_frame(
                control_pb2.ControlFrame(ping=ping_pb2.Ping(nonce=nonce, sent_us=sent))
            )

    # -- the control stream: reading --------------------------------------------------------------

    def accept_control(self, stream: INetStream) -> None:
        """Serve the control stream the peer opened (in the session's nursery).  Raises
        :class:`Closed` when the session does not run."""
        if self._nursery is None:
            raise Closed(f"session with {self.peer} is not running")
        self._nursery.start_soon(self.serve_control, stream)

    def accept_data(self, stream: INetStream) -> bool:
        """Serve a data stream the peer opened; False when the peer already has
        ``config.max_links_per_peer`` of them being served (see :meth:`PeerLinks.accept`)."""
        return self.links.accept(stream)

    async def serve_control(self, stream: INetStream) -> None:
        """Read the control stream the peer opened, until it ends."""
        if self._serving_control:
            # One control stream per direction: a second one is refused (and counted).
            self.stats.protocol_errors += 1
            self.node.report_error(
                ProtocolError(f"{self.peer} opened a second control stream"), peer=self.peer
            )
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await reset_quietly(stream)
            return
        self._serving_control = True
        reader = FrameReader(stream, MAX_CONTROL_FRAME_SIZE)
        nonce = 0
        try:
            self.node.resources.reserve(
                self.peer, "memory", MAX_CONTROL_FRAME_SIZE, "partial_frames"
            )
            self._control_partial_reserved = MAX_CONTROL_FRAME_SIZE
            first = await read_message(reader, control_pb2.ControlFrame)
            if first is None:
                raise ConnectionLost(f"{self.peer} closed its control stream before the hello")
            nonce = first.header.sequence
            if first.WhichOneof("body") != "hello":
                raise ProtocolError(f"{self.peer} sent {first.WhichOneof('body')!r} before hello")
            self._on_hello(first)
            while True:
                frame = await read_message(reader, control_pb2.ControlFrame)
                if frame is None:
                    # The peer left in good order (a reset would have raised): not an error.
                    self.close()
                    return
                nonce = frame.header.sequence
                self._last_heard = trio.current_time()
                self._on_frame(frame)
        except DndmError as exc:
            if isinstance(exc, ProtocolError) and not isinstance(exc, VersionMismatch):
                self.stats.protocol_errors += 1
                self._queue_frame(control_result(exc, nonce))
            self.close(exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await close_quietly(stream)

    def _on_hello(self, frame: control_pb2.ControlFrame) -> None:
        hello = frame.hello
        self._last_heard = trio.current_time()
        if hello.protocol_version != PROTOCOL_VERSION:
            self._queue_frame(
                control_result(
                    VersionMismatch(
                        f"this node speaks dndm protocol version {PROTOCOL_VERSION}, "
                        f"not {hello.protocol_version}"
                    ),
                    frame.header.sequence,
                )
            )
            raise VersionMismatch(
                f"{self.peer} speaks dndm protocol version {hello.protocol_version}; "
                f"this node speaks {PROTOCOL_VERSION}"
            )
        self.remote_name = hello.node_name
        self.remote_capabilities = hello.capabilities
        self.remote_incarnation = hello.incarnation
        #: ``"new"``, ``"reconnected"`` or ``"restarted"``: what the hello said of the peer.
        self.peer_start = self.node.peer_hello(self.peer, hello.incarnation)
        self.links.offered = list(hello.capabilities.compression)
        self.remote_intents.clear()
        self.remote_interests.clear()
        self.advert_expiry.clear()
        self._apply_adverts([*hello.intents, *hello.interests], frame.header.sequence)
        self.hello_received.set()
        self.reconcile()

    def _on_frame(self, frame: control_pb2.ControlFrame) -> None:
        kind = frame.WhichOneof("body")
        if not self._admission.admit(frame):
            return
        if kind == "adverts":
            self._apply_adverts(frame.adverts.adverts, frame.header.sequence)
            self.reconcile()
        elif kind == "ping":
            pong = ping_pb2.Pong(
                nonce=frame.ping.nonce,
                ping_sent_us=frame.ping.sent_us,
                received_us=now_us(),
                payload=frame.ping.payload,
            )
            pong.sent_us = now_us()
            self._queue_frame(control_pb2.ControlFrame(pong=pong))
        elif kind == "pong":
            sent = self._pings.pop(frame.pong.nonce, None)
            if sent is not None:
                # The peer's time between receiving the ping and answering is not on the wire.
                held = max(0, frame.pong.sent_us - frame.pong.received_us)
                rtt = max(0, now_us() - sent - held)
                self.stats.rtt_us = rtt
                ewma = self.stats.rtt_ewma_us
                self.stats.rtt_ewma_us = rtt if ewma is None else 0.8 * ewma + 0.2 * rtt
                self.stats.pongs_received += 1
                self.rtt_measured.set()
        elif kind == "result":
            reported = error_for(frame.result, f"{self.peer} reported")
            if isinstance(reported, VersionMismatch):
                raise reported
            self.node.report_error(reported, peer=self.peer)
        elif kind == "hello":
            raise ProtocolError(f"{self.peer} sent a second hello")

    def _apply_adverts(self, adverts: Any, nonce: int) -> None:
        for wire in adverts:
            self.stats.adverts_received += 1
            try:
                advert = parse_advert(wire)
            except ProtocolError as exc:
                # One bad advert costs only itself: count it, tell the peer, keep the rest.
                self.stats.bad_adverts += 1
                self.node.report_error(exc, peer=self.peer)
                self._queue_frame(control_result(exc, nonce))
                continue
            table = self.remote_intents if advert.is_intent else self.remote_interests
            if advert.register:
                limit = self.node.config.max_remote_adverts
                if advert.handle_id not in table and len(table) >= limit:
                    self.stats.bad_adverts += 1
                    self.node.report_error(
                        ProtocolError(f"{self.peer} advertised more than the limit"), peer=self.peer
                    )
                    continue
                table[advert.handle_id] = advert
                self.advert_expiry.refresh((advert.is_intent, advert.handle_id), advert.ttl_ms)
            else:
                table.pop(advert.handle_id, None)
                self.advert_expiry.forget((advert.is_intent, advert.handle_id))
        self.stats.advert_ttls_capped = self.advert_expiry.capped

    def _expire_adverts(self, keys: list[Hashable]) -> None:
        """Forget adverts whose TTL passed without a refresh, as their unregister would."""
        for key in keys:
            is_intent, handle_id = cast(tuple[bool, int], key)
            table = self.remote_intents if is_intent else self.remote_interests
            if table.pop(handle_id, None) is not None:
                self.stats.adverts_expired += 1
        self.reconcile()

    # -- data links -------------------------------------------------------------------------------

    def wanted_links(self) -> dict[str, tuple[Route, type[Message], QoS]]:
        """Routes the peer publishes that a local interest wants, with the link's type and QoS."""
        return self.links.wanted_links()

    def reconcile(self) -> None:
        """Open the links we need and close the ones we no longer need (idempotent)."""
        self.links.reconcile()

    # -- introspection ----------------------------------------------------------------------------

    def linked_routes(self) -> list[str]:
        """Route strings linked with this peer, both ways."""
        return self.links.linked_routes()


def _is_unsupported_protocol(error: BaseException) -> bool:
    """True when ``error`` was caused by a peer answering "na" to our protocol (py-libp2p raises
    a bare MultiselectClientError for it, so its message is what tells)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ProtocolNotSupportedError) or (
            isinstance(seen, MultiselectClientError) and "not supported" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
