"""The libp2p host of a node: identity files, Noise-only hosts, connect, QUIC.  127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import create_new_key_pair as new_secp256k1_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity_utils import save_identity as py_libp2p_save_identity
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.secio.transport import ID as SECIO_PROTOCOL_ID
from libp2p.security.secio.transport import Transport as SecioTransport
from libp2p.security.tls.transport import PROTOCOL_ID as TLS_PROTOCOL_ID
from libp2p.security.tls.transport import TLSTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

from dndm_p2p.errors import ConfigError, Unavailable
from dndm_p2p.host.build import (
    DEFAULT_LISTEN_ADDR,
    HostConfig,
    build_host,
    connect,
    connections_to,
    listen_addrs,
    running_host,
)
from dndm_p2p.host.identity import (
    decode_identity,
    encode_identity,
    generate_identity,
    load_identity,
    load_or_create_identity,
    peer_id_of,
    save_identity,
)
from protocols.libp2p_fixes.host import close_host

ECHO = TProtocol("/dndm-test/echo/1.0.0")
POSIX = os.name == "posix"


# --- helpers ----------------------------------------------------------------------------------


async def echo_handler(stream: INetStream) -> None:
    """Send every byte back until the other side closes (or resets) its end."""
    try:
        while True:
            try:
                data = await stream.read(65536)
            except StreamError:  # StreamEOF, or StreamReset when the peer closed it all
                break
            if not data:
                break
            await stream.write(data)
    finally:
        with contextlib.suppress(StreamError):
            await stream.close()


async def echo(host: IHost, peer_id: ID, payload: bytes) -> bytes:
    """Open an echo stream to ``peer_id``, send ``payload``, half-close, read all that returns."""
    stream = await host.new_stream(peer_id, [ECHO])
    try:
        await stream.write(payload)
        await stream.close_write()
        received = bytearray()
        while True:
            try:
                data = await stream.read(65536)
            except StreamEOF:
                break
            if not data:
                break
            received += data
        return bytes(received)
    finally:
        await stream.close()


async def echo_exactly(host: IHost, peer_id: ID, payload: bytes) -> bytes:
    """Like :func:`echo`, without the half-close: read back ``len(payload)`` bytes.

    Over QUIC, py-libp2p 0.8.1's half-close is unreliable: after ``close_write`` the reader
    sometimes gets ``StreamReset`` instead of EOF, and once in a while the other side sees EOF
    before the last bytes written.
    """
    stream = await host.new_stream(peer_id, [ECHO])
    try:
        await stream.write(payload)
        received = bytearray()
        while len(received) < len(payload):
            data = await stream.read(65536)
            assert data, "the stream ended early"
            received += data
        return bytes(received)
    finally:
        await stream.close()


class ConnectionEvents(INotifee):
    """Sets an event when a connection to a peer is registered with the network."""

    def __init__(self) -> None:
        self._connected: dict[ID, trio.Event] = {}

    def connected_to(self, peer_id: ID) -> trio.Event:
        return self._connected.setdefault(peer_id, trio.Event())

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self.connected_to(conn.muxed_conn.peer_id).set()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


def watch_connections(host: IHost) -> ConnectionEvents:
    events = ConnectionEvents()
    host.get_network().register_notifee(events)
    return events


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def addr_of(host: IHost, transport: str) -> Multiaddr:
    """``host``'s one listen address on ``transport`` (``"tcp"`` or ``"quic-v1"``)."""
    (found,) = [
        addr
        for addr in listen_addrs(host)
        if transport in [proto.name for proto in addr.protocols()]
    ]
    return found


def without_peer(addr: Multiaddr) -> str:
    """``addr`` without its ``/p2p/<peer id>`` suffix."""
    return str(addr).rsplit("/p2p/", 1)[0]


async def port_accepts(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


def write_key_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


# --- two hosts: Noise, yamux, echo, speed -----------------------------------------------------


async def test_two_hosts_connect_with_noise_and_yamux_and_echo_both_ways() -> None:
    with trio.fail_after(20):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            a.set_stream_handler(ECHO, echo_handler)
            b.set_stream_handler(ECHO, echo_handler)
            a_events = watch_connections(a)

            started = time.perf_counter()
            peer = await connect(b, listen_addrs(a)[0])
            elapsed = time.perf_counter() - started
            assert peer == a.get_id()
            assert elapsed < 0.2, f"connect took {elapsed * 1000:.0f} ms"

            # The raw py-libp2p view of the dialler's connection.
            raw = b.get_network().connections[a.get_id()]
            assert len(raw) == 1
            assert raw[0].get_negotiated_security_protocol() == "/noise"  # type: ignore[attr-defined]
            assert raw[0].get_negotiated_muxer_protocol() == "/yamux/1.0.0"  # type: ignore[attr-defined]

            await a_events.connected_to(b.get_id()).wait()
            (outbound,) = connections_to(b, a.get_id())
            (inbound,) = connections_to(a, b.get_id())
            for info, direction in ((outbound, "outbound"), (inbound, "inbound")):
                assert (info.transport, info.security, info.muxer) == (
                    "tcp",
                    "/noise",
                    "/yamux/1.0.0",
                )
                assert info.direction == direction

            big = os.urandom(300_000)
            assert await echo(b, a.get_id(), b"hello from b") == b"hello from b"
            assert await echo(a, b.get_id(), b"hello from a") == b"hello from a"
            assert await echo(b, a.get_id(), big) == big
            assert await echo(a, b.get_id(), big) == big


async def test_connect_again_reuses_the_open_connection() -> None:
    with trio.fail_after(20):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            await connect(b, listen_addrs(a)[0])
            first = b.get_network().get_connections(a.get_id())
            assert await connect(b, str(listen_addrs(a)[0])) == a.get_id()
            assert b.get_network().get_connections(a.get_id()) == first


def test_hosts_offer_only_noise_and_yamux() -> None:
    for quic in (False, True):
        host = build_host(generate_identity(), HostConfig(quic=quic))
        network = host.get_network()
        assert isinstance(network, Swarm)
        assert list(network.upgrader.security_multistream.transports) == ["/noise"]
        assert list(network.upgrader.muxer_multistream.transports) == [YAMUX_PROTOCOL_ID]
        assert network.connection_config.max_connections_per_peer == 1
        transports = {type(t).__name__ for t in network.transport_manager.get_transports()}
        assert transports == ({"TCP", "QUICTransport"} if quic else {"TCP"})
        assert host.get_metrics_recv_channel() is None  # type: ignore[attr-defined]


# --- peers that do not speak Noise cannot connect ---------------------------------------------


def _insecure_sec_opt(kind: str, key_pair: KeyPair) -> dict[TProtocol, object]:
    if kind == "plaintext":
        return {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}
    if kind == "secio":
        return {TProtocol(SECIO_PROTOCOL_ID): SecioTransport(key_pair)}
    return {TProtocol(TLS_PROTOCOL_ID): TLSTransport(key_pair)}


@asynccontextmanager
async def foreign_host(kind: str | None) -> AsyncIterator[IHost]:
    """A py-libp2p host offering only ``kind`` security (None: py-libp2p's defaults)."""
    key_pair = generate_identity()
    host = new_host(
        key_pair=key_pair,
        sec_opt=None if kind is None else _insecure_sec_opt(kind, key_pair),  # type: ignore[arg-type]
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    network = host.get_network()
    assert isinstance(network, Swarm)
    network.retry_config = RetryConfig(max_retries=0)
    async with host.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
        try:
            await network.auto_connector.stop()
            yield host
        finally:
            await close_host(host, grace=5)


@pytest.mark.parametrize("kind", ["plaintext", "secio", "tls"])
async def test_a_peer_without_noise_cannot_connect_either_way(kind: str) -> None:
    with trio.fail_after(20):
        async with running_host(generate_identity()) as ours, foreign_host(kind) as theirs:
            with pytest.raises(Unavailable, match="cannot connect"):
                await connect(theirs, listen_addrs(ours)[0])
            with pytest.raises(Unavailable, match="cannot connect"):
                await connect(ours, listen_addrs(theirs)[0])
            assert connections_to(ours, theirs.get_id()) == []
            assert theirs.get_network().get_connections(ours.get_id()) == []
            assert ours.get_network().get_connections() == []


async def test_a_default_py_libp2p_host_would_accept_plaintext() -> None:
    """The downgrade build_host prevents (notes §1): py-libp2p's defaults accept plaintext."""
    with trio.fail_after(20):
        async with foreign_host(None) as default, foreign_host("plaintext") as plain:
            await connect(plain, listen_addrs(default)[0])
            (info,) = connections_to(plain, default.get_id())
            assert info.security == "/plaintext/2.0.0"


# --- connect: bad addresses, nothing listening, timeouts, recovery ----------------------------


async def test_connect_where_nothing_listens_is_unavailable_at_once() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a:
            nobody = peer_id_of(generate_identity())
            started = trio.current_time()
            with pytest.raises(Unavailable, match="connection refused"):
                await connect(a, f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{nobody}", timeout=2)
            assert trio.current_time() - started < 2
            assert a.get_network().get_connections() == []


async def test_connect_to_a_silent_listener_gives_up_after_the_timeout() -> None:
    silent = trio.socket.socket()
    with silent, trio.fail_after(10):
        await silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or answers
        port = silent.getsockname()[1]
        async with running_host(generate_identity()) as a:
            nobody = peer_id_of(generate_identity())
            started = trio.current_time()
            with pytest.raises(Unavailable, match=r"no connection within 0\.5 s"):
                await connect(a, f"/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}", timeout=0.5)
            assert 0.5 <= trio.current_time() - started < 2


@pytest.mark.parametrize("transport", ["tcp", "quic-v1"])
async def test_connect_to_the_wrong_peer_id_is_unavailable(transport: str) -> None:
    config = HostConfig(quic=True)
    with trio.fail_after(10):
        async with (
            running_host(generate_identity(), config) as a,
            running_host(generate_identity(), config) as b,
        ):
            impostor = peer_id_of(generate_identity())
            wrong = without_peer(addr_of(b, transport))
            with pytest.raises(Unavailable, match=str(b.get_id())):  # the id b proved it has
                await connect(a, f"{wrong}/p2p/{impostor}")
            assert a.get_network().get_connections() == []


async def test_connect_after_a_failure_dials_the_new_address() -> None:
    """py-libp2p alone would refuse for 60 s, then dial the stale address (libp2p_fixes)."""
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            with pytest.raises(Unavailable):
                await connect(a, f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{b.get_id()}")
            assert await connect(a, listen_addrs(b)[0]) == b.get_id()
            assert len(connections_to(a, b.get_id())) == 1


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("not a multiaddr", "not a valid multiaddr"),
        ("/ip4/127.0.0.1/tcp/4001", "does not end in /p2p/"),
        (f"/p2p/{peer_id_of(generate_identity())}", "no address"),
        (
            f"/ip4/127.0.0.1/tcp/1/p2p/{peer_id_of(generate_identity())}/p2p-circuit"
            f"/p2p/{peer_id_of(generate_identity())}",
            "relay",
        ),
    ],
)
async def test_connect_rejects_unusable_addresses(addr: str, message: str) -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a:
            with pytest.raises(ConfigError, match=message):
                await connect(a, addr)


async def test_connect_rejects_the_hosts_own_address_and_a_bad_timeout() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            with pytest.raises(ConfigError, match="itself"):
                await connect(a, listen_addrs(a)[0])
            with pytest.raises(ConfigError, match="timeout"):
                await connect(a, listen_addrs(b)[0], timeout=0)


# --- running_host: listen addresses, clean exit ------------------------------------------------


async def test_listen_addrs_are_dialable_name_the_host_and_put_tcp_first() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity(), HostConfig(quic=True)) as a:
            addrs = listen_addrs(a)
            assert [[p.name for p in addr.protocols()] for addr in addrs] == [
                ["ip4", "tcp", "p2p"],
                ["ip4", "udp", "quic-v1", "p2p"],
            ]
            for addr in addrs:
                assert addr.get_peer_id() == str(a.get_id())
            assert int(addrs[0].value_for_protocol("tcp")) > 0
            assert int(addrs[1].value_for_protocol("udp")) > 0


async def test_running_host_closes_its_listeners_on_exit() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a:
            port = int(addr_of(a, "tcp").value_for_protocol("tcp"))
            assert await port_accepts(port)
        assert not await port_accepts(port)


async def _connect_then_raise(b: IHost, error: Exception) -> ID:
    async with running_host(generate_identity()) as a:
        await connect(b, listen_addrs(a)[0])
        raise error


async def test_running_host_closes_connections_and_reraises_the_blocks_exception() -> None:
    error = RuntimeError("from the block")
    with trio.fail_after(10):
        async with running_host(generate_identity()) as b:
            with pytest.raises(RuntimeError) as caught:
                await _connect_then_raise(b, error)
            assert caught.value is error
            assert b.get_network().get_connections() == []  # closed from a's side


async def test_running_host_can_be_cancelled_from_outside() -> None:
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with running_host(generate_identity()):
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught


async def test_a_port_another_host_listens_on_is_refused() -> None:
    """py-libp2p alone would share the port between the two hosts (libp2p_fixes)."""
    with trio.fail_after(10):
        async with running_host(generate_identity(), HostConfig(quic=True)) as a:
            for addr in listen_addrs(a):
                taken = without_peer(addr)
                config = HostConfig(listen=(taken,), quic=True)
                with pytest.raises(ConfigError, match=f"cannot listen on {taken}: .*in use"):
                    async with running_host(generate_identity(), config):
                        pass


async def test_a_host_restarts_on_the_port_it_just_left() -> None:
    key_pair = generate_identity()
    with trio.fail_after(20):
        async with running_host(generate_identity()) as other:
            async with running_host(key_pair) as first:
                addr = listen_addrs(first)[0]
                await connect(other, addr)  # leaves TIME_WAIT sockets on the port behind
            config = HostConfig(listen=(without_peer(addr),))
            async with running_host(key_pair, config) as again:
                assert listen_addrs(again) == [addr]
                assert await connect(other, addr) == first.get_id()


# --- HostConfig --------------------------------------------------------------------------------


def test_host_config_defaults_listen_on_loopback_tcp() -> None:
    config = HostConfig()
    assert config.listen == (DEFAULT_LISTEN_ADDR,)
    assert config.listen_multiaddrs() == [Multiaddr("/ip4/127.0.0.1/tcp/0")]


def test_quic_adds_a_quic_address_per_tcp_address() -> None:
    config = HostConfig(listen=["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/0"], quic=True)  # type: ignore[arg-type]
    assert config.listen == ("/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/0")
    assert [str(a) for a in config.listen_multiaddrs()] == [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip6/::1/tcp/0",
        "/ip4/127.0.0.1/udp/4001/quic-v1",
        "/ip6/::1/udp/0/quic-v1",
    ]
    explicit = HostConfig(listen=(DEFAULT_LISTEN_ADDR, "/ip4/127.0.0.1/udp/0/quic-v1"), quic=True)
    assert len(explicit.listen_multiaddrs()) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"listen": ()}, "empty"),
        ({"listen": "/ip4/127.0.0.1/tcp/0"}, "tuple of multiaddr strings"),
        ({"listen": ("nonsense",)}, "not a valid multiaddr"),
        ({"listen": ("/ip4/127.0.0.1/tcp/0/ws",)}, "not supported"),
        ({"listen": ("/dns4/localhost/tcp/0",)}, "not supported"),
        ({"listen": (f"/ip4/127.0.0.1/tcp/0/p2p/{peer_id_of(generate_identity())}",)}, "not supp"),
        ({"listen": ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0")}, "more than once"),
        ({"listen": ("/ip4/127.0.0.1/udp/0/quic-v1",)}, "quic=True"),
        ({"quic": 1}, "quic: must be a bool"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"negotiate_timeout": 0.5}, "negotiate_timeout"),
        ({"negotiate_timeout": float("inf")}, "negotiate_timeout"),
        ({"dial_retries": -1}, "dial_retries"),
        ({"close_timeout": 0}, "close_timeout"),
    ],
)
def test_host_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HostConfig(**kwargs)  # type: ignore[arg-type]


def test_build_host_rejects_a_non_ed25519_identity() -> None:
    with pytest.raises(ConfigError, match="Ed25519"):
        build_host(new_secp256k1_key_pair())


# --- identity files ----------------------------------------------------------------------------


def test_identity_round_trips_through_a_key_file(tmp_path: Path) -> None:
    key_pair = generate_identity()
    path = tmp_path / "keys" / "deep" / "node.key"
    path.parent.mkdir(parents=True)  # never created by save_identity (see the test below)
    save_identity(key_pair, path)
    loaded = load_identity(path)
    assert peer_id_of(loaded) == peer_id_of(key_pair)
    assert loaded.private_key == key_pair.private_key
    data = path.read_bytes()
    assert data[:4] == b"\x08\x01\x12\x40"  # Type = Ed25519, Data = 64 bytes: go's format
    assert len(data) == 68
    if POSIX:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temporary file left


def test_save_refuses_to_replace_a_key_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = generate_identity(), generate_identity()
    save_identity(first, path)
    with pytest.raises(ConfigError, match=r"already exists.*overwrite=True"):
        save_identity(second, path)
    assert peer_id_of(load_identity(path)) == peer_id_of(first)
    save_identity(second, path, overwrite=True)
    assert peer_id_of(load_identity(path)) == peer_id_of(second)
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_load_or_create_creates_once_then_reuses(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    created = load_or_create_identity(path)
    data = path.read_bytes()
    again = load_or_create_identity(path)
    assert peer_id_of(again) == peer_id_of(created)
    assert path.read_bytes() == data


def test_a_key_file_written_by_py_libp2p_is_read(tmp_path: Path) -> None:
    key_pair = generate_identity()
    path = tmp_path / "py.key"
    py_libp2p_save_identity(key_pair, path)  # the 32-byte form
    assert peer_id_of(load_identity(path)) == peer_id_of(key_pair)


@pytest.mark.skipif(not POSIX, reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_identity(generate_identity(), path)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"{path}.*{mode:04o}.*chmod 600 {path}"):
        load_identity(path)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_identity(path)  # never replaced
    path.chmod(0o600)
    load_identity(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xfe garbage \x00", "not a libp2p private key"),
        (encode_identity(generate_identity())[:40], "not a libp2p private key"),
        (b"\x08\x01\x12\x05hello", "corrupt Ed25519 key"),
        (bytes(20_000), "larger than"),
    ],
)
def test_a_corrupt_key_file_is_refused_and_kept(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, data)
    with pytest.raises(ConfigError, match=message) as caught:
        load_identity(path)
    assert str(path) in str(caught.value)
    with pytest.raises(ConfigError, match=message):
        load_or_create_identity(path)
    assert path.read_bytes() == data  # never replaced


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    other = new_secp256k1_key_pair()
    path = tmp_path / "secp.key"
    write_key_file(path, other.private_key.serialize())
    with pytest.raises(ConfigError, match="Secp256k1 key; dndm-p2p identities must be Ed25519"):
        load_identity(path)
    with pytest.raises(ConfigError, match="Ed25519"):
        save_identity(other, tmp_path / "new.key")
    assert not (tmp_path / "new.key").exists()


def test_missing_or_odd_key_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_identity(tmp_path / "absent.key")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_identity(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot write"):
        save_identity(generate_identity(), blocker / "node.key")  # its parent is a file


def test_decode_identity_names_its_source() -> None:
    with pytest.raises(ConfigError, match="the env var DNDM_KEY is empty"):
        decode_identity(b"", source="the env var DNDM_KEY")
    key_pair = generate_identity()
    assert peer_id_of(decode_identity(encode_identity(key_pair))) == peer_id_of(key_pair)


async def test_a_host_restarted_with_the_same_key_file_keeps_its_peer_id(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    with trio.fail_after(20):
        async with running_host(load_or_create_identity(path)) as first:
            first_id = first.get_id()
        assert first_id == peer_id_of(load_identity(path))
        async with (
            running_host(load_or_create_identity(path)) as again,
            running_host(generate_identity()) as other,
        ):
            assert again.get_id() == first_id
            # The peer id is what the Noise handshake proves, not just a label.
            assert await connect(other, listen_addrs(again)[0]) == first_id


# --- QUIC ----------------------------------------------------------------------------------------


async def test_two_quic_hosts_connect_over_quic_and_echo_both_ways() -> None:
    config = HostConfig(quic=True)
    with trio.fail_after(20):
        async with (
            running_host(generate_identity(), config) as a,
            running_host(generate_identity(), config) as b,
        ):
            a.set_stream_handler(ECHO, echo_handler)
            b.set_stream_handler(ECHO, echo_handler)
            a_events = watch_connections(a)

            assert await connect(b, addr_of(a, "quic-v1")) == a.get_id()
            await a_events.connected_to(b.get_id()).wait()
            for host, peer, direction in ((b, a, "outbound"), (a, b, "inbound")):
                (info,) = connections_to(host, peer.get_id())
                assert (info.transport, info.direction) == ("quic-v1", direction)

            payload = os.urandom(300_000)
            assert await echo_exactly(b, a.get_id(), b"over quic") == b"over quic"
            assert await echo_exactly(a, b.get_id(), b"and back") == b"and back"
            assert await echo_exactly(b, a.get_id(), payload) == payload
            assert await echo_exactly(a, b.get_id(), payload) == payload


async def test_a_quic_host_still_speaks_noise_over_tcp() -> None:
    with trio.fail_after(20):
        async with (
            running_host(generate_identity(), HostConfig(quic=True)) as a,
            running_host(generate_identity()) as tcp_only,
        ):
            assert await connect(tcp_only, addr_of(a, "tcp")) == a.get_id()
            (info,) = connections_to(tcp_only, a.get_id())
            assert (info.transport, info.security) == ("tcp", "/noise")


def test_a_key_file_in_a_missing_directory_is_refused_and_no_directory_is_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nonexistent" / "dir" / "node.key"
    with pytest.raises(ConfigError, match=r"cannot write identity key file .*/dir does not exist"):
        load_or_create_identity(path)
    assert not (tmp_path / "nonexistent").exists()
