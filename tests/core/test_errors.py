"""The exception hierarchy: builtin bases, the transient/permanent split, and the facts errors
carry, checked at real raise sites."""

from __future__ import annotations

import pickle

import pytest

import dndm_p2p
from dht.config import DhtConfig
from dndm_p2p import (
    CallbackError,
    Closed,
    ConfigError,
    ConnectionLost,
    DndmError,
    FrameTooLarge,
    MalformedFrame,
    NodeConfig,
    NoInterest,
    PermanentError,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RemoteError,
    ResourceLimitExceeded,
    RouteError,
    Router,
    Timeout,
    TransientError,
    TypeMismatch,
    Unavailable,
    UnknownRoute,
    VersionMismatch,
    WouldBlock,
    parse_route,
)
from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.rpc import Caller
from dndm_p2p.discovery.config import GossipConfig, MdnsConfig
from nat.config import NatConfig
from protocols import errors
from protocols.framing import FrameReader, FrameWriter, encode_frame
from tests.proto.messages_pb2 import Foo, Reply, Request

BUILTIN_BASES: dict[type[DndmError], type[BaseException]] = {
    WouldBlock: BlockingIOError,
    Timeout: TimeoutError,
    Unavailable: ConnectionError,
    ConnectionLost: ConnectionError,
    RouteError: ValueError,
    TypeMismatch: TypeError,
    Closed: RuntimeError,
    ConfigError: ValueError,
    PermissionDenied: PermissionError,
    ResourceLimitExceeded: OSError,
}

TRANSIENT = {
    TransientError,
    NoInterest,
    WouldBlock,
    Timeout,
    Unavailable,
    ConnectionLost,
    errors.SlowSubscriber,
    errors.LinkReset,
    ResourceLimitExceeded,
    RateLimited,
}
PERMANENT = {
    PermanentError,
    RouteError,
    TypeMismatch,
    Closed,
    ConfigError,
    ProtocolError,
    FrameTooLarge,
    MalformedFrame,
    VersionMismatch,
    UnknownRoute,
    PermissionDenied,
    CallbackError,
    RemoteError,
}


def every_class() -> list[type[DndmError]]:
    found = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, DndmError) for cls in found)
    return found


@pytest.mark.parametrize(("cls", "builtin"), BUILTIN_BASES.items())
def test_each_class_derives_from_the_builtin_it_means(
    cls: type[DndmError], builtin: type[BaseException]
) -> None:
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("message")


def test_every_class_is_transient_or_permanent_never_both() -> None:
    classes = set(every_class()) - {DndmError}
    assert classes == TRANSIENT | PERMANENT
    for cls in TRANSIENT:
        assert issubclass(cls, TransientError)
        assert not issubclass(cls, PermanentError)
        assert cls.transient
        assert cls("x").transient
    for cls in PERMANENT:
        assert issubclass(cls, PermanentError)
        assert not issubclass(cls, TransientError)
        assert not cls.transient


def test_the_top_level_package_exports_the_hierarchy() -> None:
    for cls in every_class():
        assert getattr(dndm_p2p, cls.__name__) is cls


@pytest.mark.parametrize("cls", every_class())
def test_str_is_the_message_and_os_error_bases_read_no_errno(cls: type[DndmError]) -> None:
    error = cls("queue is full")
    assert str(error) == "queue is full"
    assert error.args == ("queue is full",)
    assert str(cls()) == ""
    assert str(cls("two", "parts")) == str(("two", "parts"))
    if isinstance(error, OSError):
        assert error.errno is None
        assert error.strerror is None


@pytest.mark.parametrize("cls", every_class())
def test_facts_are_keyword_only_and_default_to_none(cls: type[DndmError]) -> None:
    plain = cls("message")
    assert (plain.peer, plain.route) == (None, None)
    told = cls("message", peer="12D3KooW", route="a.b")
    assert (told.peer, told.route) == ("12D3KooW", "a.b")
    assert str(told) == "message"
    copied = pickle.loads(pickle.dumps(told))
    assert (type(copied), str(copied), copied.peer, copied.route) == (
        cls,
        "message",
        "12D3KooW",
        "a.b",
    )


def test_class_specific_facts() -> None:
    assert ConfigError("x").field is None
    assert ConfigError("x", field="NodeConfig.name").field == "NodeConfig.name"
    assert Timeout("x").timeout is None
    assert Timeout("x", timeout=2.5).timeout == 2.5
    assert (FrameTooLarge("x").size, FrameTooLarge("x").limit) == (None, None)
    too_large = FrameTooLarge("x", size=5000, limit=4096)
    assert (too_large.size, too_large.limit) == (5000, 4096)
    assert (RemoteError("x").code, RemoteError("x").kind) == (None, None)
    remote = RemoteError("x", code=1, kind="ValueError")
    assert (remote.code, remote.kind) == (1, "ValueError")


# -- at real raise sites --------------------------------------------------------------------


def test_a_config_error_from_node_config_names_its_field() -> None:
    with pytest.raises(ConfigError) as caught:
        NodeConfig(ping_interval=-1)
    assert caught.value.field == "NodeConfig.ping_interval"
    assert str(caught.value) == (
        "NodeConfig.ping_interval: must be a number of seconds > 0, not -1"
    )
    with pytest.raises(ConfigError) as caught:
        NodeConfig(dht=True)  # type: ignore[arg-type]
    assert caught.value.field == "NodeConfig.dht"
    assert "dht=DhtConfig()" in str(caught.value)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DhtConfig(provide_interval=-1), "DhtConfig.provide_interval"),
        (lambda: DhtConfig(max_providers=0), "DhtConfig.max_providers"),
        (lambda: GossipConfig(heartbeat=float("inf")), "GossipConfig.heartbeat"),
        (lambda: GossipConfig(namespace_depth=0), "GossipConfig.namespace_depth"),
        (lambda: MdnsConfig(interfaces=("lo",)), "MdnsConfig.interfaces"),
        (lambda: NatConfig(punch_delay=-1), "NatConfig.punch_delay"),
        (lambda: NodeConfig(max_frame_size=10), "NodeConfig.max_frame_size"),
        (lambda: NodeConfig(listen="/ip4/127.0.0.1/tcp/0"), "NodeConfig.listen"),
    ],
)
def test_every_config_class_names_the_bad_field(make: object, field: str) -> None:
    assert callable(make)
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_route_error_carries_the_route_text() -> None:
    with pytest.raises(RouteError) as caught:
        parse_route("Foo@a@b")
    assert caught.value.route == "Foo@a@b"
    with pytest.raises(RouteError) as caught:
        Pattern("a..b")
    assert caught.value.route == "a..b"


class _Bytes:
    """A byte stream that delivers ``data`` and records what is written."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.written = b""

    async def read(self, n: int | None = None) -> bytes:
        chunk, self.data = self.data[: n or len(self.data)], self.data[n or len(self.data) :]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data


async def test_an_oversize_frame_carries_its_size_and_the_limit() -> None:
    reader = FrameReader(_Bytes(encode_frame(bytes(2000))), max_size=1024)
    with pytest.raises(FrameTooLarge) as caught:
        await reader.read_frame()
    assert isinstance(caught.value, ProtocolError)
    assert (caught.value.size, caught.value.limit) == (2000, 1024)
    stream = _Bytes()
    with pytest.raises(FrameTooLarge) as caught:
        await FrameWriter(stream, max_size=100).write_frame(bytes(101))
    assert (caught.value.size, caught.value.limit) == (101, 100)
    assert stream.written == b""


async def test_would_block_is_a_blocking_io_error_naming_the_route(router: Router) -> None:
    async with router.publish("x.y", Foo), router.subscribe("x.y", Foo) as sub:
        with pytest.raises(BlockingIOError) as caught:
            sub.receive_nowait()
    assert isinstance(caught.value, WouldBlock)
    assert caught.value.route is not None
    assert "x.y" in caught.value.route
    assert caught.value.errno is None


async def test_a_timed_out_call_carries_its_route_and_time_limit(router: Router) -> None:
    async with Caller(router, "svc", Request, Reply) as caller:
        with pytest.raises(TimeoutError) as caught:
            await caller.call(Request(text="anyone?"), timeout=0.05)
    assert isinstance(caught.value, Timeout)
    assert (caught.value.route, caught.value.timeout) == ("svc", 0.05)


async def test_closed_is_a_runtime_error_at_its_raise_site() -> None:
    async with Router(name="closing") as router:
        pass
    with pytest.raises(RuntimeError) as caught:
        router.publish("x.y", Foo)
    assert isinstance(caught.value, Closed)


class _Failing:
    """A byte stream whose reads and writes raise ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def read(self, n: int | None = None) -> bytes:
        raise self.error

    async def write(self, data: bytes) -> None:
        raise self.error


async def test_our_connection_errors_pass_through_the_framing_unchanged() -> None:
    """Unavailable is a ConnectionError now; the framing still maps only foreign ones."""
    ours = Unavailable("the peer went away", peer="12D3KooW")
    with pytest.raises(Unavailable) as caught:
        await FrameReader(_Failing(ours)).read_frame()
    assert caught.value is ours
    writer = FrameWriter(_Failing(ours))
    with pytest.raises(Unavailable) as caught:
        await writer.write_frame(b"x")
    assert caught.value is ours
    assert writer.broken
    with pytest.raises(ConnectionLost, match="stream broke while reading"):
        await FrameReader(_Failing(ConnectionResetError("reset"))).read_frame()
