"""The admin endpoint on a Unix socket: answers, limits, socket-file hygiene, a real node."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from dndm_p2p.errors import ConfigError, PermanentError, Timeout, Unavailable
from dndm_p2p.node import admin
from dndm_p2p.node.admin import (
    MAX_CLIENTS,
    MAX_REQUEST_SIZE,
    AdminServer,
    query_peers,
    query_routes,
)
from dndm_p2p.node.node import KnownRoute, PeerInfo
from protocols.framing import FrameReader, FrameWriter, encode_frame, read_message
from protocols.v1 import admin_pb2
from tests.proto.messages_pb2 import Foo
from tests.support.nodes import mesh

PEER_A = "12D3KooWHDpAymdJ2GHhAYNTuuzu1PfdKDDUvnvQDNNhJ2mA7wim"
PEER_B = "12D3KooWFGP3vwyec32M2ovSkaEBcHwWdjeypYaGMdkSxdZ8ttJh"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private directory (pytest's tmp_path can exceed a Unix socket path's limit)."""
    directory = Path(tempfile.mkdtemp(prefix="dndm-admin-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class FakeNode:
    """Routes and peers to serve, and a switch to make a query fail."""

    routes: list[KnownRoute] = field(default_factory=list)
    peer_list: list[PeerInfo] = field(default_factory=list)
    broken: bool = False

    def known_routes(self) -> list[KnownRoute]:
        if self.broken:
            raise KeyError("a bug")
        return list(self.routes)

    def peers(self) -> list[PeerInfo]:
        return list(self.peer_list)


ROUTES = [
    KnownRoute("dndm.test.Foo@robot.arm", "intent", "local", None, "dndm.test.Foo", True),
    KnownRoute("robot.*", "interest", "peer", PEER_A, "dndm.test.Foo", False),
    KnownRoute("robot#00ff", "intent", "gossip", PEER_B, "dndm.test.Bar", False),
]
PEERS = [
    PeerInfo(PEER_A, "arm", ("/ip4/127.0.0.1/tcp/4001",), 250, ("dndm.test.Foo@robot.arm",)),
    PeerInfo(PEER_B, "", (), None, ()),
]


async def test_routes_and_peers_come_back_as_the_node_has_them(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(FakeNode(ROUTES, PEERS), path).run)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert await query_routes(path) == ROUTES
        assert await query_peers(path) == PEERS
        nursery.cancel_scope.cancel()
    assert not path.exists()  # removed on exit


async def test_empty_and_long_answers(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    many = [
        KnownRoute(f"dndm.test.Foo@r.n{i}", "intent", "local", None, "dndm.test.Foo", False)
        for i in range(1000)
    ]
    node = FakeNode()
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(node, path).run)
        assert await query_routes(path) == []
        assert await query_peers(path) == []
        node.routes = many
        assert await query_routes(path) == many  # several chunks, in order
        nursery.cancel_scope.cancel()


async def test_no_node_is_unavailable(sock_dir: Path) -> None:
    with pytest.raises(Unavailable, match="no such socket"):
        await query_routes(sock_dir / "missing.sock")
    stale = sock_dir / "stale.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(stale))  # bound, never listening, then closed: a crashed node's leftover
    left.close()
    with pytest.raises(Unavailable, match="stopped node"):
        await query_peers(stale)
    plain = sock_dir / "plain"
    plain.write_text("not a socket")
    with pytest.raises(Unavailable, match="no node listens"):
        await query_peers(plain)


async def test_a_stale_socket_is_replaced_and_a_live_one_is_not(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(FakeNode(ROUTES), path).run)
        assert await query_routes(path) == ROUTES
        with pytest.raises(ConfigError, match="another process"):
            await AdminServer(FakeNode(), path).run()
        assert await query_routes(path) == ROUTES  # the first one still serves
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir: Path) -> None:
    path = sock_dir / "precious"
    path.write_text("data")
    with pytest.raises(ConfigError, match="is not a socket"):
        await AdminServer(FakeNode(), path).run()
    assert path.read_text() == "data"


async def test_the_socket_of_another_server_is_not_removed_on_exit(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(FakeNode(), path).run)
        os.unlink(path)  # someone took the path over meanwhile
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(str(path))
        nursery.cancel_scope.cancel()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    other.close()


async def test_a_missing_directory_is_created_private_and_a_long_path_refused(
    sock_dir: Path,
) -> None:
    path = sock_dir / "run" / "dndm" / "n.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(FakeNode(), path).run)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        nursery.cancel_scope.cancel()
    with pytest.raises(ConfigError, match="longer than 107 bytes"):
        await AdminServer(FakeNode(), sock_dir / ("x" * 120)).run()
    with pytest.raises(ConfigError, match="longer than 107 bytes"):
        await query_routes(sock_dir / ("x" * 120))


class RawClient:
    """A client speaking frames by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        from dndm_p2p.node.admin import _SocketBytes

        self.stream = stream
        self.reader = FrameReader(_SocketBytes(stream))
        self.writer = FrameWriter(_SocketBytes(stream))

    async def reply(self) -> admin_pb2.AdminReply | None:
        return await read_message(self.reader, admin_pb2.AdminReply)


async def test_an_oversized_or_malformed_request_is_answered_with_an_error(
    sock_dir: Path,
) -> None:
    path = sock_dir / "node.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(FakeNode(ROUTES), path).run)
        with trio.fail_after(10):
            for frame, expected in [
                (encode_frame(b"\x00" * (MAX_REQUEST_SIZE + 1)), "above the limit"),
                (encode_frame(b"\xff\xff"), "bad request"),
                (encode_frame(b""), "has no body"),  # no query named
            ]:
                async with await trio.open_unix_socket(str(path)) as stream:
                    client = RawClient(stream)
                    await stream.send_all(frame)
                    reply = await client.reply()
                    assert reply is not None
                    assert reply.WhichOneof("body") == "error"
                    assert expected in reply.error.message
                    assert reply.last
                    assert not reply.error.transient
                    assert await client.reply() is None  # then the node hangs up
        assert await query_routes(path) == ROUTES  # and goes on serving
        nursery.cancel_scope.cancel()


async def test_too_many_clients_at_once_are_told_the_node_is_busy(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    server = AdminServer(FakeNode(ROUTES), path)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        idle = [await trio.open_unix_socket(str(path)) for _ in range(MAX_CLIENTS)]
        with trio.fail_after(10):
            while server.refused == 0:  # the server counts a client once it accepted it
                try:
                    await query_routes(path)
                except Unavailable as exc:
                    busy = str(exc)
                else:  # an earlier connection was not accepted yet: try again
                    await trio.sleep(0.01)
        assert "the node is busy" in busy
        for stream in idle:
            await stream.aclose()
        with trio.fail_after(10):
            while True:  # the idle clients' slots free as the server sees them leave
                try:
                    assert await query_routes(path) == ROUTES
                    break
                except Unavailable:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_a_bug_in_the_node_is_reported_and_the_server_goes_on(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    node = FakeNode(ROUTES, broken=True)
    errors: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(node, path, on_error=errors.append).run)
        with pytest.raises(PermanentError, match="internal error: KeyError"):
            await query_routes(path)
        assert [type(e) for e in errors] == [KeyError]
        assert await query_peers(path) == []
        nursery.cancel_scope.cancel()
    # Without on_error, the bug ends the server.
    with pytest.RaisesGroup(KeyError, flatten_subgroups=True):
        await _query_a_server_without_on_error(node, path)


async def _query_a_server_without_on_error(node: FakeNode, path: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(AdminServer(node, path).run)
        with pytest.raises(Unavailable):  # the server hung up, unanswered
            await query_routes(path)
        await trio.sleep_forever()  # until the server's failure cancels this


async def test_a_node_that_does_not_answer_times_out(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "CLIENT_TIMEOUT", 0.2)
    path = sock_dir / "mute.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        await listener.bind(str(path))
        listener.listen(1)
        with pytest.raises(Timeout, match=r"did not answer within 0\.2 s"):
            await query_routes(path)


async def test_a_real_node_lists_its_routes_and_peers(sock_dir: Path) -> None:
    path = sock_dir / "node.sock"
    async with mesh(2) as (a, b), trio.open_nursery() as nursery:
        await nursery.start(AdminServer(a, path).run)
        async with a.publish("robot.arm", Foo) as intent, b.subscribe("robot.arm", Foo):
            with trio.fail_after(10):
                await intent.wait_links(lambda links: len(links) >= 1)
            routes = await query_routes(path)
            assert sorted(routes, key=lambda r: r.origin) == sorted(
                a.known_routes(), key=lambda r: r.origin
            )
            local = [r for r in routes if r.origin == "local"]
            assert [(r.route, r.kind, r.linked) for r in local] == [
                ("dndm.test.Foo@robot.arm", "intent", True)
            ]
            remote = [r for r in routes if r.origin == "peer"]
            assert [(r.kind, r.peer, r.msg_type) for r in remote] == [
                ("interest", b.peer_id, "dndm.test.Foo")
            ]
            peers = await query_peers(path)
            assert [(p.peer, p.name) for p in peers] == [(b.peer_id, "n1")]
            assert peers[0].addrs == a.peers()[0].addrs
        nursery.cancel_scope.cancel()
