"""The ``dndm`` command line (in process) and the message-type helpers behind it."""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from google.protobuf.message import Message
from grpc_tools import protoc  # type: ignore[import-untyped]

from dndm_p2p.cli.exitcodes import EXIT_PERMANENT, EXIT_TRANSIENT
from dndm_p2p.cli.main import main, parse_args
from dndm_p2p.cli.msgtypes import (
    generate_message,
    latency_us,
    load_descriptor_set,
    message_from_dict,
    message_from_json,
    message_to_dict,
    message_to_json,
    resolve_message_type,
    type_from_descriptor_set,
)
from dndm_p2p.cli.options import BOOTSTRAP_MAX_CONNECTIONS
from dndm_p2p.cli.running import node_config
from dndm_p2p.cli.runtime import default_admin_socket
from dndm_p2p.config import DhtConfig, GossipConfig, MdnsConfig, NodeConfig
from dndm_p2p.errors import ConfigError
from dndm_p2p.host.identity import load_identity, peer_id_of
from dndm_p2p.node.admin import AdminServer
from dndm_p2p.proto.demo_pb2 import Temperature
from tests.proto.messages_pb2 import Bar, Foo, Sample
from tests.support.nodes import mesh

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "tests" / "proto"


def compile_descriptor_set(out: Path, *protos: Path, include: Path = PROTO_DIR) -> Path:
    """Compile ``protos`` into a descriptor set with grpc_tools' protoc."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{include}",
        f"-I{well_known}",
        "--include_imports",
        f"--descriptor_set_out={out}",
        *map(str, protos),
    ]
    assert protoc.main(args) == 0
    return out


@pytest.fixture
def descriptor_set(tmp_path: Path) -> Path:
    """tests/proto/messages.proto compiled into a descriptor set."""
    return compile_descriptor_set(tmp_path / "messages.pb", PROTO_DIR / "messages.proto")


# -- keygen ---------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_and_prints_its_peer_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "keys" / "node.key"
    key.parent.mkdir()
    assert main(["keygen", "--out", str(key)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(peer_id_of(load_identity(key)))
    assert out.startswith("12D3KooW")
    assert str(key) in err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_keygen_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "node.key"
    assert main(["keygen", "--out", str(key)]) == 0
    first = capsys.readouterr().out.strip()
    before = key.read_bytes()
    assert main(["keygen", "--out", str(key)]) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert err.startswith("dndm: error: ")
    assert "already exists" in err
    assert "--force" in err
    assert key.read_bytes() == before
    assert main(["keygen", "--out", str(key), "--force"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first
    assert str(peer_id_of(load_identity(key))) == second


def test_keygen_defaults_to_dndm_key_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen"]) == 0
    assert str(peer_id_of(load_identity(tmp_path / "dndm.key"))) == capsys.readouterr().out.strip()


# -- resolving message types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "tests.proto.messages_pb2:Sample",
        "tests.proto.messages_pb2.Sample",
        " tests.proto.messages_pb2:Sample ",
    ],
)
def test_a_python_path_names_the_generated_class(name: str) -> None:
    assert resolve_message_type(name) is Sample


def test_demo_types_are_known_by_their_protobuf_names() -> None:
    assert resolve_message_type("dndm.demo.v1.Temperature") is Temperature


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "empty"),
        ("no_such_module_xyz:Foo", "no module named 'no_such_module_xyz'"),
        ("tests.proto.messages_pb2:Nope", "has no attribute 'Nope'"),
        ("tests.proto.messages_pb2.Nope", "has no attribute 'Nope'"),
        ("os:path", "not a protobuf message class"),
        ("tests.proto.messages_pb2:", "package.module:Message"),
        ("not a name", "not a dotted Python name"),
        ("Foo", "names no module"),
    ],
)
def test_a_bad_python_path_is_a_config_error_saying_why(name: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        resolve_message_type(name)


def test_a_descriptor_set_builds_classes_without_generated_code(descriptor_set: Path) -> None:
    sample_type = resolve_message_type("dndm.test.Sample", descriptor_set)
    assert sample_type is not Sample  # built at run time, in its own pool
    assert sample_type.DESCRIPTOR.full_name == "dndm.test.Sample"
    msg = sample_type(payload=b"\x01", seq=7)
    # The same wire format as the generated class.
    assert Sample.FromString(msg.SerializeToString()) == Sample(payload=b"\x01", seq=7)
    assert type_from_descriptor_set(".dndm.test.Bar", descriptor_set)().DESCRIPTOR.name == "Bar"
    pool = load_descriptor_set(descriptor_set)
    assert pool.FindMessageTypeByName("dndm.test.Foo").fields_by_name["text"].number == 1


def test_a_descriptor_set_with_imports_and_nested_messages(tmp_path: Path) -> None:
    (tmp_path / "base.proto").write_text(
        'syntax = "proto3";\npackage t.base;\nmessage Id { string v = 1; }\n'
    )
    (tmp_path / "top.proto").write_text(
        'syntax = "proto3";\npackage t.top;\nimport "base.proto";\n'
        'import "google/protobuf/timestamp.proto";\n'
        "message Outer { message Inner { t.base.Id id = 1; } Inner inner = 1;\n"
        "  google.protobuf.Timestamp at = 2; }\n"
    )
    out = compile_descriptor_set(tmp_path / "top.pb", tmp_path / "top.proto", include=tmp_path)
    inner_type = resolve_message_type("t.top.Outer.Inner", out)
    outer_type = resolve_message_type("t.top.Outer", out)
    msg = message_from_dict({"inner": {"id": {"v": "x"}}, "at": "2024-01-01T00:00:00Z"}, outer_type)
    assert message_to_dict(msg)["inner"] == {"id": {"v": "x"}}
    assert inner_type.DESCRIPTOR.full_name == "t.top.Outer.Inner"


def test_descriptor_set_errors_are_config_errors(tmp_path: Path, descriptor_set: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_message_type("dndm.test.Foo", tmp_path / "missing.pb")
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xff\xff not a descriptor set")
    with pytest.raises(ConfigError, match="not a protobuf descriptor set"):
        resolve_message_type("dndm.test.Foo", garbage)
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        resolve_message_type("dndm.test.Foo", empty)
    with pytest.raises(ConfigError, match=r"no message 'dndm\.test\.Nope'.*dndm\.test\.Foo"):
        resolve_message_type("dndm.test.Nope", descriptor_set)
    with pytest.raises(ConfigError, match="Python path"):
        resolve_message_type("tests.proto.messages_pb2:Foo", descriptor_set)


def test_a_descriptor_set_missing_an_import_says_to_include_imports(tmp_path: Path) -> None:
    (tmp_path / "base.proto").write_text(
        'syntax = "proto3";\npackage t.base;\nmessage Id { string v = 1; }\n'
    )
    (tmp_path / "top.proto").write_text(
        'syntax = "proto3";\npackage t.top;\nimport "base.proto";\n'
        "message Top { t.base.Id id = 1; }\n"
    )
    out = tmp_path / "top.pb"
    assert (
        protoc.main(
            ["protoc", f"-I{tmp_path}", f"--descriptor_set_out={out}", str(tmp_path / "top.proto")]
        )
        == 0
    )
    with pytest.raises(ConfigError, match="include_imports"):
        resolve_message_type("t.top.Top", out)


# -- JSON -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        Sample(payload=b"\x00\xffbytes", seq=2**64 - 1),
        Sample(),
        Foo(text="héllo"),
        Bar(a=1, b=4_000_000_000),
        Temperature(celsius=-12.5, seq=3, sensor="arm"),
    ],
)
def test_json_round_trip(msg: Message) -> None:
    data = message_to_dict(msg)
    assert message_from_dict(data, type(msg)) == msg
    assert message_from_json(message_to_json(msg), type(msg)) == msg


def test_json_uses_proto_field_names_and_includes_defaults() -> None:
    assert message_to_dict(Temperature(celsius=1.5)) == {"celsius": 1.5, "seq": "0", "sensor": ""}
    assert message_from_dict({"celsius": 2, "seq": 3}, Temperature) == Temperature(celsius=2, seq=3)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"celsius": "hot"}, "celsius"),
        ({"seq": -1}, "seq"),
        ({"seq": 1.5}, "seq"),
        ({"sensor": 5}, "sensor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_json_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"dndm.demo.v1.Temperature.*{field}"):
        message_from_dict(data, Temperature)


def test_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a JSON object, not an array"):
        message_from_json("[1, 2]", Temperature)
    with pytest.raises(ConfigError, match="not valid JSON"):
        message_from_json("{celsius: 1}", Temperature)


def test_generated_messages_count_up_and_carry_the_send_time(descriptor_set: Path) -> None:
    assert [generate_message(Temperature, n).seq for n in (1, 2, 3)] == [1, 2, 3]
    assert generate_message(Foo, 5) == Foo()  # no seq field: defaults
    stamped = compile_stamped(descriptor_set.parent)
    msg = generate_message(stamped, 9, now_ns=5_000_000_000)
    fields = (getattr(msg, "seq"), getattr(msg, "sent_ns"), getattr(msg, "sent_us"))  # noqa: B009
    assert fields == (9.0, 5_000_000_000, 5_000_000)
    assert latency_us(msg, now_ns=5_000_250_000) == 250
    assert latency_us(Temperature(seq=1)) is None
    assert latency_us(stamped()) is None  # the field is not set


def compile_stamped(directory: Path) -> type[Message]:
    """A message type with a floating-point seq and two send-time fields."""
    (directory / "stamped.proto").write_text(
        'syntax = "proto3";\npackage probe;\n'
        "message Stamped { double seq = 1; uint64 sent_ns = 2; int64 sent_us = 3; }\n"
    )
    out = compile_descriptor_set(
        directory / "stamped.pb", directory / "stamped.proto", include=directory
    )
    return resolve_message_type("probe.Stamped", out)


# -- the command line's errors ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pub", "sub"])
def test_a_bad_type_exits_2_with_a_clear_message(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "robot.arm.temp", "--type", "no_such_module_xyz:Temp"]) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert err.startswith("dndm: error: ")
    assert "no module named 'no_such_module_xyz'" in err


def test_a_type_missing_from_the_descriptor_set_exits_2(
    descriptor_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sub", "x", "--type", "dndm.test.Nope", "--descriptor-set", str(descriptor_set)]
    assert main(argv) == EXIT_PERMANENT
    assert "defines no message 'dndm.test.Nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pub", "robot.*.temp", "--type", "tests.proto.messages_pb2:Foo"], "is a pattern"),
        (["pub", "robot..temp", "--type", "tests.proto.messages_pb2:Foo"], "empty"),
        (["sub", "dndm.test.Bar@x", "--type", "tests.proto.messages_pb2:Foo"], "dndm.test.Bar"),
        (["sub", "dndm.test.Bar@x.*", "--type", "tests.proto.messages_pb2:Foo"], "names type"),
        (
            [
                "sub",
                "x",
                "--type",
                "tests.proto.messages_pb2:Foo",
                "--reliable",
                "--overflow",
                "drop_oldest",
            ],
            "--reliable needs --overflow block",
        ),
        (
            ["sub", "x", "--type", "tests.proto.messages_pb2:Foo", "--peer", "127.0.0.1:4001"],
            "NodeConfig.peers: '127.0.0.1:4001' is not a multiaddr",
        ),
        (
            [
                *("pub", "x", "--type", "tests.proto.messages_pb2:Foo"),
                *("--peer", "/ip4/127.0.0.1/tcp/9"),
            ],
            "does not name the peer: add /p2p/<peer id>",
        ),
    ],
)
def test_bad_routes_and_options_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_PERMANENT
    err = capsys.readouterr().err
    assert err.startswith("dndm: error: ")
    assert expected in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["pub", "x"],  # --type is required
        ["sub", "x", "--type", "T", "--count", "0"],
        ["pub", "x", "--type", "T", "--rate", "-1"],
        ["demo", "--count", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2


def test_pub_with_no_subscriber_gives_up_with_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "pub",
        "lonely",
        "--type",
        "tests.proto.messages_pb2:Foo",
        "--generate",
        "--timeout",
        "0.3",
    ]
    assert main(argv) == EXIT_TRANSIENT
    err = capsys.readouterr().err
    assert "dndm: error: 0 of 1 subscriber(s) of dndm.test.Foo@lonely linked within 0.3 s" in err


def test_sub_that_gets_too_few_messages_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "sub",
        "quiet",
        "--type",
        "tests.proto.messages_pb2:Foo",
        "--count",
        "1",
        "--timeout",
        "0.3",
    ]
    assert main(argv) == EXIT_TRANSIENT
    assert "dndm: error: received 0 of 1 messages within 0.3 s" in capsys.readouterr().err


def test_pub_without_waiting_sends_generated_messages_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "pub",
        "nobody.listens",
        "--type",
        "tests.proto.messages_pb2:Sample",
        "--generate",
        "--count",
        "3",
        "--rate",
        "0",
        "--no-wait-interest",
    ]
    assert main(argv) == 0
    assert '"event": "done", "sent": 3' in capsys.readouterr().err


def test_bad_json_on_stdin_exits_2_naming_the_line_and_field() -> None:
    dndm = Path(sys.executable).with_name("dndm")
    command = [str(dndm)] if dndm.exists() else [sys.executable, "-m", "dndm_p2p.cli"]
    result = subprocess.run(
        [*command, "pub", "x", "--type", "tests.proto.messages_pb2:Foo", "--no-wait-interest"],
        input=b'{"text": "fine"}\n\n{"text": 1}\n',
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == EXIT_PERMANENT, result.stderr.decode()
    err = result.stderr.decode()
    assert "dndm: error: stdin line 3: invalid dndm.test.Foo message" in err
    assert "text field" in err


# -- discovery options ----------------------------------------------------------------------------

BOOT = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWHDpAymdJ2GHhAYNTuuzu1PfdKDDUvnvQDNNhJ2mA7wim"
BOOT2 = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWFGP3vwyec32M2ovSkaEBcHwWdjeypYaGMdkSxdZ8ttJh"


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private XDG_RUNTIME_DIR (pytest's tmp_path can be too long for socket paths)."""
    directory = Path(tempfile.mkdtemp(prefix="dndm-cli-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    yield directory / "dndm"
    shutil.rmtree(directory, ignore_errors=True)


def config_of(*argv: str) -> NodeConfig:
    return node_config(parse_args(list(argv)))


def discovery_of(config: NodeConfig) -> tuple[bool, bool, bool]:
    """Whether ``config`` runs the DHT, gossip and mDNS."""
    return (config.dht is not None, config.gossip is not None, config.mdns is not None)


def test_dndm_node_discovers_by_default(runtime_dir: Path) -> None:
    config = config_of("node")
    assert discovery_of(config) == (True, True, True)
    assert config.mdns == MdnsConfig(interfaces=("127.0.0.1",))
    assert config.bootstrap == ()
    assert config.gossip == GossipConfig(relay_all=False)  # not a bootstrap server
    assert config.max_connections == NodeConfig().max_connections
    assert config.address_book is None  # no key file: nowhere obvious to keep it
    assert config.admin_socket == runtime_dir / f"node-{os.getpid()}.sock"


def test_dndm_node_discovery_options(runtime_dir: Path) -> None:
    config = config_of(
        "node",
        "--bootstrap-peer",
        BOOT,
        "--bootstrap-peer",
        BOOT2,
        "--no-gossip",
        "--mdns-interface",
        "127.0.0.1",
        "--mdns-interface",
        "127.0.0.2",
        "--address-book",
        "/var/lib/dndm/peers",
        "--admin-socket",
        "/run/dndm/hub.sock",
    )
    assert config.bootstrap == (BOOT, BOOT2)
    assert discovery_of(config) == (True, False, True)
    assert config.mdns == MdnsConfig(interfaces=("127.0.0.1", "127.0.0.2"))
    assert config.address_book == Path("/var/lib/dndm/peers")
    assert config.admin_socket == Path("/run/dndm/hub.sock")
    config = config_of("node", "--no-dht", "--no-mdns")
    assert discovery_of(config) == (False, True, False)


def test_dndm_node_bootstrap_runs_a_server(runtime_dir: Path) -> None:
    config = config_of("node", "--bootstrap")
    assert config.gossip == GossipConfig(relay_all=True)  # relays every advert topic
    assert config.dht == DhtConfig(server=True)
    assert config.max_connections == BOOTSTRAP_MAX_CONNECTIONS
    with pytest.raises(ConfigError, match="cannot go with --no-dht"):
        config_of("node", "--bootstrap", "--no-dht")


def test_the_key_file_names_the_address_book_and_the_admin_socket(
    runtime_dir: Path, tmp_path: Path
) -> None:
    key = tmp_path / "keys" / "arm.key"
    config = config_of("node", "--key", str(key), "--name", "arm")
    assert config.address_book == tmp_path / "keys" / "arm.key.addressbook"
    assert config.admin_socket is not None
    assert config.admin_socket.parent == runtime_dir
    assert config.admin_socket.name.startswith("arm-")
    assert config.admin_socket.suffix == ".sock"
    # Another key file of the same name elsewhere gets another socket.
    other = config_of("node", "--key", str(tmp_path / "arm.key"))
    assert other.admin_socket != config.admin_socket
    # Without a key, the name (made safe for a file name) names the socket.
    assert config_of("node", "--name", "hub/1 ").admin_socket == runtime_dir / "hub_1_.sock"


def test_a_runtime_directory_that_is_not_private_is_refused(runtime_dir: Path) -> None:
    runtime_dir.mkdir(mode=0o755)
    runtime_dir.chmod(0o755)
    with pytest.raises(ConfigError, match="not a private directory"):
        config_of("node")
    assert config_of("node", "--admin-socket", str(runtime_dir / "x.sock")).admin_socket


@pytest.mark.parametrize("command", ["pub", "sub"])
def test_pub_and_sub_discover_only_with_a_bootstrap_peer(command: str, runtime_dir: Path) -> None:
    plain = config_of(command, "r", "--type", "T")
    assert discovery_of(plain) == (False, False, False)
    assert plain.admin_socket is None
    assert plain.address_book is None
    found = config_of(command, "r", "--type", "T", "--bootstrap-peer", BOOT)
    assert found.bootstrap == (BOOT,)
    assert discovery_of(found) == (True, True, False)
    assert config_of(command, "r", "--type", "T", "--bootstrap-peer", BOOT, "--no-dht").dht is None


@pytest.mark.parametrize(
    "argv",
    [
        ["pub", "r", "--type", "T", "--bootstrap"],  # a server is a `dndm node`
        ["sub", "r", "--type", "T", "--mdns"],
        ["routes", "--bogus"],
    ],
)
def test_node_only_options_are_usage_errors_elsewhere(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)
    assert raised.value.code == 2


# -- dndm routes, dndm peers ----------------------------------------------------------------------


async def test_routes_and_peers_of_a_running_node(
    runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_admin_socket(None, "n0")
    async with mesh(2) as (a, b), trio.open_nursery() as nursery:
        await nursery.start(AdminServer(a, path).run)
        async with a.publish("robot.arm", Foo) as intent, b.subscribe("robot.*", Foo):
            with trio.fail_after(10):
                await intent.wait_links(lambda links: len(links) >= 1)
            capsys.readouterr()

            assert await trio.to_thread.run_sync(main, ["routes", "--name", "n0"]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert lines[0].split() == ["ROUTE", "KIND", "ORIGIN", "PEER", "MSG_TYPE", "LINKED"]
            rows = sorted(line.split() for line in lines[1:])
            assert rows == [
                ["dndm.test.Foo@robot.arm", "intent", "local", "-", "dndm.test.Foo", "yes"],
                ["robot.*", "interest", "peer", b.peer_id, "dndm.test.Foo", "yes"],
            ]

            # The only socket of the runtime directory is found without being named.
            assert await trio.to_thread.run_sync(main, ["peers", "--json"]) == 0
            records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert len(records) == 1
            assert records[0]["peer"] == b.peer_id
            assert records[0]["name"] == "n1"
            assert records[0]["addrs"] == list(a.peers()[0].addrs)
            assert set(records[0]) == {"peer", "name", "addrs", "rtt_us", "routes"}

            argv = ["routes", "--admin-socket", str(path), "--json"]
            assert await trio.to_thread.run_sync(main, argv) == 0
            records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert {(r["origin"], r["kind"], r["linked"]) for r in records} == {
                ("local", "intent", True),
                ("peer", "interest", True),
            }
        nursery.cancel_scope.cancel()


def test_routes_with_no_node_running_exits_3(
    runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["routes"]) == EXIT_TRANSIENT
    assert f"no node's admin socket in {runtime_dir}" in capsys.readouterr().err
    assert main(["peers", "--name", "nobody"]) == EXIT_TRANSIENT
    assert "no node listens at" in capsys.readouterr().err


def test_routes_with_several_nodes_and_none_named_exits_2(
    runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime_dir.mkdir(mode=0o700)
    bound = []
    for name in ("a.sock", "b.sock"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(runtime_dir / name))
        bound.append(sock)
    try:
        assert main(["routes"]) == EXIT_PERMANENT
        assert "several admin sockets" in capsys.readouterr().err
    finally:
        for sock in bound:
            sock.close()


def test_a_key_in_a_missing_directory_exits_2_and_makes_no_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "nonexistent" / "x.key"
    assert main(["keygen", "--out", str(key)]) == EXIT_PERMANENT
    assert "does not exist" in capsys.readouterr().err
    assert not key.parent.exists()
