"""The local admin endpoint of a node: ``dndm routes`` and ``dndm peers`` ask a running node.

A Unix domain socket (``NodeConfig.admin_socket``) carries length-prefixed protobuf frames
(:mod:`protocols.framing`, schema ``protocols/v1/admin.proto``): the client sends one
``AdminRequest``, the node answers with ``AdminReply`` frames (a long answer is split in
chunks; the last frame has ``last`` set) and closes the connection::

    server = AdminServer(node, path)            # node: anything with known_routes() and peers()
    await nursery.start(server.run)             # serves until cancelled, then removes the socket

    routes = await query_routes(path)           # list[KnownRoute]
    peers = await query_peers(path)             # list[PeerInfo]

The server is for the local user only: the socket file is made mode 0600 (and a directory it
has to create, 0700).  It refuses to replace a socket another process still serves, and any
file that is not a socket; a socket left by a process that died is replaced.  On exit it
removes the socket file, if it is still its own.  Requests are at most
:data:`MAX_REQUEST_SIZE` bytes, at most :data:`MAX_CLIENTS` clients are served at once (more
are told the node is busy), and a client has :data:`CLIENT_TIMEOUT` seconds for its exchange.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio
from google.protobuf.message import Message

from dndm_p2p.errors import (
    ConfigError,
    ConnectionLost,
    DndmError,
    PermanentError,
    PermissionDenied,
    ProtocolError,
    Timeout,
    Unavailable,
)
from dndm_p2p.node.types import KnownRoute, PeerInfo
from protocols.framing import FrameReader, FrameWriter, read_message
from protocols.ids import MAX_FRAME_SIZE
from protocols.v1 import admin_pb2, common_pb2

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = [
    "CLIENT_TIMEOUT",
    "MAX_CLIENTS",
    "MAX_REQUEST_SIZE",
    "AdminServer",
    "AdminSource",
    "query_peers",
    "query_routes",
]

#: Largest request frame the server reads, in bytes.
MAX_REQUEST_SIZE = 1024
#: Most clients served at once; more are answered "busy".
MAX_CLIENTS = 8
#: Seconds a client has for its whole exchange (request and answer), on either side.
CLIENT_TIMEOUT = 10.0
#: Entries per reply frame.
_CHUNK = 256
#: Most bytes a client accepts in one answer.
_MAX_ANSWER = 256 * 1024 * 1024
#: Longest path of a Unix socket (``sun_path`` holds 108 bytes with the final NUL on Linux).
_MAX_PATH = 107

_KIND_TO_WIRE = {
    "intent": common_pb2.ROUTE_KIND_INTENT,
    "interest": common_pb2.ROUTE_KIND_INTEREST,
}
_KIND_FROM_WIRE = {wire: name for name, wire in _KIND_TO_WIRE.items()}

E = TypeVar("E", bound=Message)


class AdminSource(Protocol):
    """What the admin endpoint asks of the node it serves."""

    def known_routes(self) -> list[KnownRoute]:
        """Every intent and interest the node knows of."""
        ...

    def peers(self) -> list[PeerInfo]:
        """Every connected peer."""
        ...


class _SocketBytes:
    """A trio socket stream as the :class:`~protocols.framing.ByteStream` framing reads."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return await self._stream.receive_some(n or 65536)

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)


# -- the server ---------------------------------------------------------------------------------


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_PATH:
        raise ConfigError(
            f"admin socket path {path} is longer than {_MAX_PATH} bytes, the limit of a Unix "
            "socket path: choose a shorter one"
        )


class AdminServer:
    """Serves ``node``'s routes and peers on the Unix socket ``path`` (see the module doc).

    ``on_error`` receives an unexpected exception met while answering a client (a bug); the
    client is told of an internal error and the server goes on.  Without it, such an
    exception ends :meth:`run`.
    """

    def __init__(
        self,
        node: AdminSource,
        path: Path,
        *,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._node = node
        self.path = Path(path)
        self._on_error = on_error
        self._clients = 0
        #: Clients answered "busy" because :data:`MAX_CLIENTS` were being served.
        self.refused = 0

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the socket and answer clients until cancelled; then remove the socket.

        Started once the socket accepts connections.  Raises :class:`ConfigError` when the
        path is unusable: too long, something other than a socket is there, another process
        serves it, or the directory cannot be created or written.
        """
        path = self.path
        _check_path_length(path)
        _make_directory(path.parent)
        await _claim(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            try:
                await sock.bind(os.fspath(path))
            except OSError as exc:
                raise ConfigError(f"cannot listen on admin socket {path}: {exc}") from exc
            own = os.stat(path)
            try:
                os.chmod(path, 0o600)
                sock.listen(MAX_CLIENTS)
                listener = trio.SocketListener(sock)
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    while True:
                        stream = await listener.accept()
                        if self._clients >= MAX_CLIENTS:
                            self.refused += 1
                            await self._refuse(stream)
                            continue
                        self._clients += 1
                        nursery.start_soon(self._serve, stream)
            finally:
                _remove_if_own(path, own)

    async def _refuse(self, stream: trio.SocketStream) -> None:
        busy = admin_pb2.AdminReply(
            error=admin_pb2.AdminError(
                message="the node is busy with other admin clients", transient=True
            ),
            last=True,
        )
        async with stream:
            # A client that left already was being turned away anyway.
            with trio.move_on_after(0.1), suppress(ConnectionLost):
                await FrameWriter(_SocketBytes(stream)).write_message(busy)

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                with trio.move_on_after(CLIENT_TIMEOUT):
                    await self._exchange(stream)
        finally:
            self._clients -= 1

    async def _exchange(self, stream: trio.SocketStream) -> None:
        writer = FrameWriter(_SocketBytes(stream))
        reader = FrameReader(_SocketBytes(stream), MAX_REQUEST_SIZE)
        try:
            request = await read_message(reader, admin_pb2.AdminRequest)
        except ConnectionLost:
            return  # the client went away before asking: nothing to answer
        except ProtocolError as exc:
            await _send(writer, [_error_reply(f"bad request: {exc}", transient=False)])
            return
        if request is None:
            return  # connected and left (a liveness probe)
        try:
            replies = list(self._answer(request))
        except DndmError as exc:
            replies = [_error_reply(str(exc), transient=exc.transient)]
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)
            replies = [_error_reply(f"internal error: {exc!r}", transient=False)]
        await _send(writer, replies)

    def _answer(self, request: admin_pb2.AdminRequest) -> Iterator[admin_pb2.AdminReply]:
        if request.WhichOneof("body") == "routes":
            routes = [_route_entry(route) for route in self._node.known_routes()]
            for part in _chunks(routes):
                yield admin_pb2.AdminReply(routes=admin_pb2.RoutesChunk(routes=part))
        else:
            peers = [_peer_entry(peer) for peer in self._node.peers()]
            for piece in _chunks(peers):
                yield admin_pb2.AdminReply(peers=admin_pb2.PeersChunk(peers=piece))


def _chunks(entries: Sequence[E]) -> Iterator[Sequence[E]]:
    yield entries[:_CHUNK]  # at least one frame, even when there is nothing to list
    for start in range(_CHUNK, len(entries), _CHUNK):
        yield entries[start : start + _CHUNK]


def _error_reply(message: str, *, transient: bool) -> admin_pb2.AdminReply:
    return admin_pb2.AdminReply(
        error=admin_pb2.AdminError(message=message, transient=transient), last=True
    )


async def _send(writer: FrameWriter, replies: list[admin_pb2.AdminReply]) -> None:
    replies[-1].last = True
    try:
        for reply in replies:
            await writer.write_message(reply)
    except ConnectionLost:
        pass  # the client went away before the end of its answer: its loss alone


def _route_entry(route: KnownRoute) -> admin_pb2.KnownRouteEntry:
    entry = admin_pb2.KnownRouteEntry(
        route=route.route,
        kind=_KIND_TO_WIRE.get(route.kind, common_pb2.ROUTE_KIND_UNSPECIFIED),
        origin=route.origin,
        msg_type=route.msg_type,
        linked=route.linked,
    )
    if route.peer is not None:
        entry.peer = route.peer
    return entry


def _peer_entry(peer: PeerInfo) -> admin_pb2.PeerEntry:
    entry = admin_pb2.PeerEntry(
        peer=peer.peer, name=peer.name, addrs=peer.addrs, routes=peer.routes
    )
    if peer.rtt_us is not None:
        entry.rtt_us = peer.rtt_us
    return entry


def _make_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the admin socket's directory {directory}: {exc}") from exc


async def _claim(path: Path) -> None:
    """Make way for a new socket at ``path``: remove a dead one, refuse anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{path} exists and is not a socket: refusing to replace it")
    try:
        stream = await trio.open_unix_socket(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        try:  # nobody listens: left by a process that ended without removing it
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed meanwhile: what we wanted
        except OSError as exc:
            raise ConfigError(f"cannot remove the stale admin socket {path}: {exc}") from exc
        return
    except OSError as exc:
        raise ConfigError(f"cannot check the existing admin socket {path}: {exc}") from exc
    await stream.aclose()
    raise ConfigError(
        f"another process (a running node?) serves the admin socket {path}: "
        "stop it or choose another admin socket path"
    )


def _remove_if_own(path: Path, own: os.stat_result) -> None:
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (own.st_dev, own.st_ino):
            os.unlink(path)
    except FileNotFoundError:
        pass  # someone removed it already: the end result is the same


# -- the client ---------------------------------------------------------------------------------


async def query_routes(path: Path | str) -> list[KnownRoute]:
    """Every intent and interest the node serving ``path`` knows of.

    Raises :class:`Unavailable` when no node listens there, :class:`PermissionDenied` when
    the socket is not ours to use, :class:`Timeout` when the node does not answer within
    :data:`CLIENT_TIMEOUT` seconds.
    """
    request = admin_pb2.AdminRequest(routes=admin_pb2.RoutesQuery())
    routes: list[KnownRoute] = []
    for reply in await _query(Path(path), request, "routes"):
        for entry in reply.routes.routes:
            routes.append(
                KnownRoute(
                    entry.route,
                    _KIND_FROM_WIRE.get(entry.kind, "unknown"),
                    entry.origin,
                    entry.peer if entry.HasField("peer") else None,
                    entry.msg_type,
                    entry.linked,
                )
            )
    return routes


async def query_peers(path: Path | str) -> list[PeerInfo]:
    """Every peer connected to the node serving ``path`` (errors as :func:`query_routes`)."""
    request = admin_pb2.AdminRequest(peers=admin_pb2.PeersQuery())
    peers: list[PeerInfo] = []
    for reply in await _query(Path(path), request, "peers"):
        for entry in reply.peers.peers:
            peers.append(
                PeerInfo(
                    entry.peer,
                    entry.name,
                    tuple(entry.addrs),
                    entry.rtt_us if entry.HasField("rtt_us") else None,
                    tuple(entry.routes),
                )
            )
    return peers


async def _query(
    path: Path, request: admin_pb2.AdminRequest, expected: str
) -> list[admin_pb2.AdminReply]:
    timeout = CLIENT_TIMEOUT
    _check_path_length(path)
    try:
        stream = await trio.open_unix_socket(os.fspath(path))
    except FileNotFoundError:
        raise Unavailable(f"no node listens at {path}: there is no such socket") from None
    except ConnectionRefusedError:
        raise Unavailable(f"no node listens at {path} (a socket left by a stopped node)") from None
    except PermissionError as exc:
        raise PermissionDenied(f"cannot use the admin socket {path}: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR, errno.ECONNREFUSED):
            raise Unavailable(f"no node listens at {path}: {exc.strerror}") from None
        raise Unavailable(f"cannot reach a node at {path}: {exc}") from exc
    replies: list[admin_pb2.AdminReply] = []
    async with stream:
        with trio.move_on_after(timeout) as timer:
            writer = FrameWriter(_SocketBytes(stream))
            reader = FrameReader(_SocketBytes(stream), MAX_FRAME_SIZE)
            await writer.write_message(request)
            total = 0
            while True:
                reply = await read_message(reader, admin_pb2.AdminReply)
                if reply is None:
                    raise ConnectionLost(f"the node at {path} closed the connection mid-answer")
                total += reply.ByteSize()
                if total > _MAX_ANSWER:
                    raise ProtocolError(f"the answer from {path} exceeds {_MAX_ANSWER} bytes")
                kind = reply.WhichOneof("body")
                if kind == "error":
                    error = reply.error
                    if error.transient:
                        raise Unavailable(f"the node at {path}: {error.message}")
                    raise PermanentError(f"the node at {path}: {error.message}")
                if kind != expected:
                    raise ProtocolError(f"the node at {path} answered {kind!r} to {expected!r}")
                replies.append(reply)
                if reply.last:
                    return replies
    assert timer.cancelled_caught
    raise Timeout(f"the node at {path} did not answer within {timeout:g} s", timeout=timeout)
