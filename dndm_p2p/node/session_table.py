"""The node's peer sessions: at most one running per connected DNDM peer.

A :class:`SessionTable` starts a peer's session when a connection to it opens, when it opens a
stream to us, or when the node joins it; concurrent starts for one peer share one session.  It
serves the control and data streams peers open, ends a session when the peer's last connection
closes, and when a session ends it forgets it, tells the application (``peer_disconnected``,
or ``peer_moved`` when the session moves to a direct connection), closes the peer's connection
and schedules a reconnection when the peer is wanted or had links (unless it was dropped for
exceeding its limits).  A peer that turns out not to speak DNDM is kept in
:attr:`SessionTable.foreign_peers` while connected, and no session is started with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import (
    Closed,
    ConnectionLost,
    DndmError,
    ProtocolError,
    ResourceLimitExceeded,
    Unavailable,
)
from dndm_p2p.host.build import admission_of, connect
from dndm_p2p.node.addressbook import AddressBook
from dndm_p2p.node.best_effort import write_quietly
from dndm_p2p.node.reconnect import Reconnector
from dndm_p2p.node.results import data_result
from dndm_p2p.node.types import NodeEvent, PeerStats
from protocols.framing import FrameWriter

if TYPE_CHECKING:
    from libp2p.abc import IHost, INetConn, INetStream
    from libp2p.peer.id import ID
    from trio_typing import TaskStatus

__all__ = ["SessionTable", "TabledSession"]


class TabledSession(Protocol):
    """A peer's session, as far as the table goes (a
    :class:`~dndm_p2p.node.session.PeerSession`)."""

    peer: str
    peer_id: ID
    stats: PeerStats
    error: DndmError | None
    had_links: bool
    hello_received: trio.Event
    ended: trio.Event

    @property
    def running(self) -> bool:
        """True while the session runs."""

    @property
    def not_dndm(self) -> bool:
        """True when the session failed because the peer does not speak DNDM."""

    def close(self, error: DndmError | None = None) -> None:
        """End the session (idempotent); ``error`` says why, if it failed."""

    async def run(self, *, task_status: TaskStatus[None] = ...) -> None:
        """Run the session until it ends (started with ``nursery.start``)."""

    def accept_control(self, stream: INetStream) -> None:
        """Serve the control stream the peer opened."""

    def accept_data(self, stream: INetStream) -> bool:
        """Serve a data stream the peer opened; False when over the peer's link count."""


S = TypeVar("S", bound=TabledSession)


S_contra = TypeVar("S_contra", bound=TabledSession, contravariant=True)


class SessionMoving(Protocol[S_contra]):
    """How sessions move to a new (direct) connection (a
    :class:`~dndm_p2p.node.moves.SessionMoves`)."""

    def note_connection(self, conn: INetConn, session: S_contra | None) -> None:
        """A connection to a peer opened; ``session`` is the peer's running one, if any."""

    def finish(self, session: S_contra) -> bool:
        """``session`` ended: True when it ended to move to a new connection."""

    def forget(self, peer: str) -> None:
        """The peer's last connection closed."""

    async def retire_old_session(self, stream: INetStream) -> None:
        """The peer opened ``stream`` on a new connection: end a session moving off the old."""


class SessionTable(Generic[S]):
    """The running sessions, by peer id (see the module docstring)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        new_session: Callable[[ID], S],
        host: Callable[[], IHost],
        nursery: Callable[[], trio.Nursery | None],
        closing: Callable[[], bool],
        moves: SessionMoving[S],
        reconnector: Reconnector,
        address_book: Callable[[], AddressBook | None],
        emit: Callable[[NodeEvent], None],
        report_error: Callable[..., None],
    ) -> None:
        """``new_session`` makes the (not yet running) session with a peer; ``host``,
        ``nursery``, ``closing`` and ``address_book`` give the node's, as they are now."""
        self._config = config
        self._new_session = new_session
        self._host = host
        self._nursery = nursery
        self._closing = closing
        self._moves = moves
        self._reconnector = reconnector
        self._address_book = address_book
        self._emit = emit
        self._report_error = report_error
        #: Every session not yet forgotten, by peer id (running or ending).
        self.sessions: dict[str, S] = {}
        self._starting: dict[str, trio.Event] = {}
        #: Connected libp2p peers that do not speak DNDM (no session is started with them).
        self.foreign_peers: set[str] = set()
        #: Control requests refused as over their peer's rate, by sessions that have ended.
        self.rate_limited_before = 0
        #: Data streams refused (over the peer's limits or its link count).
        self.dropped_streams = 0

    def session(self, peer: str) -> S | None:
        """The running session with ``peer``, if any."""
        session = self.sessions.get(peer)
        return session if session is not None and session.running else None

    def running(self) -> list[S]:
        """The running sessions."""
        return [session for session in self.sessions.values() if session.running]

    def rate_limited(self) -> int:
        """Control requests refused as over their peer's rate, by every session so far."""
        return self.rate_limited_before + sum(s.stats.rate_limited for s in self.sessions.values())

    async def join(self, addr: str, *, keep: bool) -> str:
        """Connect to the libp2p peer at ``addr``; return once it sent its hello or turned out
        to be foreign (then it is in :attr:`foreign_peers`).  With ``keep`` the peer is wanted
        (reconnected whenever its connection drops).

        :raises Unavailable: the peer cannot be reached, or its session failed or sent no
            hello within ``config.handshake_timeout``.
        """
        timeout = self._config.handshake_timeout
        peer_id = await connect(self._host(), addr, timeout=timeout)
        peer = str(peer_id)
        address_book = self._address_book()
        if address_book is not None:
            address_book.record(peer, [addr])
        if keep:
            self._reconnector.want(peer, addr)
        if peer in self.foreign_peers:
            return peer
        session = await self.start(peer_id)
        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:

                async def first_of(event: trio.Event) -> None:
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first_of, session.hello_received)
                nursery.start_soon(first_of, session.ended)
        if session.hello_received.is_set() or session.not_dndm:
            return peer
        if scope.cancelled_caught:
            raise Unavailable(f"{peer} connected but sent no hello")
        raise Unavailable(f"the session with {peer} failed: {session.error}", peer=peer)

    async def start(self, peer_id: ID) -> S:
        """The running session with ``peer_id``, started (in the node's nursery) if needed.

        :raises Closed: the node is closing.
        """
        peer = str(peer_id)
        while True:
            session = self.sessions.get(peer)
            if session is not None and session.running:
                return session
            starting = self._starting.get(peer)
            if starting is None:
                break
            await starting.wait()
        node_nursery = self._nursery()
        if self._closing() or node_nursery is None:
            raise Closed("the node is closing")
        starting = self._starting[peer] = trio.Event()
        try:
            session = self._new_session(peer_id)
            self.sessions[peer] = session
            await node_nursery.start(session.run)
        finally:
            del self._starting[peer]
            starting.set()
        self._emit(NodeEvent("peer_connected", peer))
        return session

    async def _start_session_quietly(self, peer_id: ID) -> None:
        try:
            await self.start(peer_id)
        except Closed:
            return

    def session_ended(self, session: S) -> None:
        """A session ended: forget it, tell the application, maybe reconnect."""
        if self.sessions.get(session.peer) is session:
            del self.sessions[session.peer]
        self.rate_limited_before += session.stats.rate_limited
        closing, nursery = self._closing(), self._nursery()
        if self._moves.finish(session) and not closing and nursery is not None:
            self._emit(NodeEvent("peer_moved", session.peer, "to a direct connection"))
            nursery.start_soon(self._start_session_quietly, session.peer_id)
            return
        detail = str(session.error) if session.error is not None else ""
        if session.not_dndm:
            # A libp2p peer that does not speak DNDM (a go or js DHT node, say): keep the
            # connection for the protocols we share, and do not ask again while it lasts.
            self.foreign_peers.add(session.peer)
            self._emit(NodeEvent("peer_disconnected", session.peer, "not a DNDM node"))
            admission = admission_of(self._host())
            if admission is not None and nursery is not None and not closing:
                nursery.start_soon(admission.mark_foreign, session.peer_id)
            return
        self._emit(NodeEvent("peer_disconnected", session.peer, detail, session.error))
        if closing:
            return
        if nursery is not None:
            nursery.start_soon(self._drop_connection, session.peer_id)
        # A peer dropped for exceeding its limits is not called back unless it is wanted.
        dropped = isinstance(session.error, ResourceLimitExceeded)
        if self._reconnector.is_wanted(session.peer) or (session.had_links and not dropped):
            self._reconnector.schedule(session.peer)

    async def _drop_connection(self, peer_id: ID) -> None:
        if self.session(str(peer_id)) is not None:
            return  # a new session already took over the peer's (new) connection
        try:
            await self._host().disconnect(peer_id)
        except Exception as exc:
            self._report_error(Unavailable(f"closing the connection to {peer_id}: {exc}"))

    def connection_opened(self, conn: INetConn) -> None:
        """Start the session with a newly connected peer (in the node's nursery)."""
        peer_id = conn.muxed_conn.peer_id
        nursery = self._nursery()
        if self._closing() or nursery is None or str(peer_id) in self.foreign_peers:
            return
        self._moves.note_connection(conn, self.session(str(peer_id)))
        nursery.start_soon(self._start_session_quietly, peer_id)

    def last_connection_closed(self, peer_id: ID) -> None:
        """End the session when no connection to the peer is left."""
        peer = str(peer_id)
        self._moves.forget(peer)
        if peer in self.foreign_peers:
            self.foreign_peers.discard(peer)
            if self._reconnector.is_wanted(peer):  # a bootstrap node, say: keep it connected
                self._reconnector.schedule(peer)
        session = self.sessions.get(peer)
        if session is not None:
            session.close(ConnectionLost(f"connection to {peer_id} closed"))

    async def on_control_stream(self, stream: INetStream) -> None:
        """Serve a control stream the peer opened (reset when the node is closing)."""
        await self._moves.retire_old_session(stream)
        try:
            session = await self.start(stream.muxed_conn.peer_id)
        except Closed:
            await stream.reset()
            return
        session.accept_control(stream)

    async def on_data_stream(self, stream: INetStream) -> None:
        """Serve a data stream the peer opened; one over the peer's limits is refused with a
        Result, one over ``config.max_links_per_peer`` reset (both counted and reported)."""
        peer_id = stream.muxed_conn.peer_id
        await self._moves.retire_old_session(stream)
        try:
            session = await self.start(peer_id)
        except Closed:
            await stream.reset()
            return
        try:
            accepted = session.accept_data(stream)
        except ResourceLimitExceeded as exc:
            self.dropped_streams += 1
            self._report_error(exc, peer=str(peer_id))
            with trio.move_on_after(1):
                await write_quietly(FrameWriter(stream), data_result(exc))
            await stream.reset()
            return
        if not accepted:
            self.dropped_streams += 1
            self._report_error(
                ProtocolError(
                    f"{peer_id} opened more than {self._config.max_links_per_peer} links"
                ),
                peer=str(peer_id),
            )
            await stream.reset()
