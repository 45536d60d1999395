"""The ``dndm`` command line.

::

    dndm demo                                   # a 3-node mesh in one process, no configuration
    dndm keygen --out node.key                  # an Ed25519 identity; prints the peer id
    dndm node --listen /ip4/0.0.0.0/tcp/4001 --key node.key
    dndm sub 'robot.*.temp' --type dndm.demo.v1.Temperature --peer /ip4/.../p2p/12D3KooW...
    dndm pub robot.arm.temp --type dndm.demo.v1.Temperature --generate --count 10 --peer ...
    echo '{"celsius": 21.5}' | dndm pub robot.arm.temp --type dndm.demo.v1.Temperature --peer ...
    dndm node --bootstrap --listen /ip4/0.0.0.0/tcp/4001 --key boot.key   # a well-known entry point
    dndm node --bootstrap-peer /ip4/.../tcp/4001/p2p/12D3KooW...          # discovery through it
    dndm routes --key node.key          # the intents and interests a running node knows of
    dndm peers --admin-socket /run/user/1000/dndm/hub.sock --json

Discovery: ``dndm node`` finds peers through the Kademlia DHT and GossipSub adverts (seeded by
``--bootstrap-peer``; ``--no-dht``, ``--no-gossip`` turn either off) and on the LAN with mDNS
(``--no-mdns`` turns it off; ``--mdns-interface`` chooses the interface addresses, 127.0.0.1 by
default).  ``dndm pub`` and ``dndm sub`` use the DHT and gossip only when given a
``--bootstrap-peer``.  ``dndm node --bootstrap`` runs a bootstrap server: a DHT server that
relays every advert topic, allowing many connections.  The addresses of peers met are kept in
an address book (``--address-book``; by default ``<key file>.addressbook`` next to ``--key``,
none without a key).

Introspection: ``dndm node`` serves ``dndm routes`` and ``dndm peers`` on a Unix socket
(``--admin-socket``), by default in the per-user runtime directory
(``$XDG_RUNTIME_DIR/dndm/``, else ``<tmp>/dndm-<uid>/``, mode 0700) and named after the key
file (``<key stem>-<hash of its path>.sock``), else the node name (``<name>.sock``), else the
process id (``node-<pid>.sock``).  ``dndm routes`` and ``dndm peers`` find it the same way from
``--key`` or ``--name``, or with neither, use the only socket in that directory.  They print a
table, or one JSON object per line with ``--json``.

Output is made for scripts: ``dndm node`` prints JSON lines on stdout (``listening`` first, then
peer events); ``dndm sub`` prints one JSON line per message on stdout; status lines of ``pub``
and ``sub`` (``listening``, ``linked``, peer events, ``done``) are JSON lines on stderr.

Exit status: 0 success (also after SIGINT/SIGTERM, which stop a command cleanly); 2 a usage
error or a permanent error (bad option, bad type, bad route, bad input); 3 a transient error
(nobody subscribed in time, a peer unreachable, messages not acknowledged in time).  Errors are
printed as ``dndm: error: <message>`` on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio
import trio.testing
from google.protobuf.message import Message

from dndm_p2p.cli.msgtypes import (
    generate_message,
    latency_us,
    message_from_json,
    message_to_dict,
    resolve_message_type,
)
from dndm_p2p.config import DhtConfig, GossipConfig, MdnsConfig, NodeConfig
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkEventKind, LinkInfo
from dndm_p2p.core.pattern import Pattern, is_pattern
from dndm_p2p.core.qos import DEFAULT_DEPTH, Overflow
from dndm_p2p.core.route import PlainRoute, message_full_name, parse_route
from dndm_p2p.errors import (
    ConfigError,
    DndmError,
    NoInterest,
    TransientError,
    TypeMismatch,
    Unavailable,
)
from dndm_p2p.nurseries import open_owned_nursery

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node, NodeEvent
    from dndm_p2p.node.outbound import OutboundLink

# The node (and py-libp2p under it) is imported only by the commands that run one: it takes a
# good part of a second, during which a signal would kill the process without a clean stop.

__all__ = [
    "EXIT_OK",
    "EXIT_PERMANENT",
    "EXIT_TRANSIENT",
    "default_admin_socket",
    "main",
    "node_config",
    "parse_args",
    "runtime_directory",
]

#: Exit status of a command that did its job (or was stopped by SIGINT/SIGTERM).
EXIT_OK = 0
#: Exit status of a usage error or a permanent error: running it again cannot succeed.
EXIT_PERMANENT = 2
#: Exit status of a transient error: running it again later may succeed.
EXIT_TRANSIENT = 3

#: Where ``dndm keygen`` writes the key without ``--out``.
DEFAULT_KEY_FILE = "dndm.key"
#: Most connections of ``dndm node --bootstrap`` (a well-known entry point for many peers).
BOOTSTRAP_MAX_CONNECTIONS = 1000
#: Interface address of mDNS discovery without ``--mdns-interface``.
DEFAULT_MDNS_INTERFACE = "127.0.0.1"
#: Suffix added to the key file's name to name the default address book.
ADDRESS_BOOK_SUFFIX = ".addressbook"
#: Messages per second of ``dndm pub --generate`` without ``--rate``.
DEFAULT_GENERATE_RATE = 10.0
#: Most messages sent at once when there is no rate to keep.
_SEND_CHUNK = 256
#: How often pub checks whether its subscribers have everything, in seconds.
_DRAIN_POLL = 0.01
#: How long pub waits, without --reliable, for subscribers to take what is in flight.
_BEST_EFFORT_DRAIN = 5.0
#: Longest a subscriber waits for its last acknowledgements to go out before it leaves.
_SETTLE_LIMIT = 1.0

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# -- the parser ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _add_node_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("node options")
    group.add_argument(
        "--listen",
        action="append",
        metavar="MADDR",
        help="multiaddr to listen on (repeatable; default /ip4/127.0.0.1/tcp/0)",
    )
    group.add_argument(
        "--key",
        type=Path,
        metavar="PATH",
        help="identity key file, created if missing (default: a fresh identity every run)",
    )
    group.add_argument(
        "--peer",
        action="append",
        metavar="MADDR",
        default=[],
        help="peer to connect to and keep connected, /ip4/.../tcp/.../p2p/<id> (repeatable)",
    )
    group.add_argument("--name", default="", help="a human-readable node name sent to peers")
    group.add_argument("--quic", action="store_true", help="also listen on QUIC next to TCP")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show py-libp2p's log on stderr (-v warnings, -vv everything)",
    )


def _add_discovery_options(parser: argparse.ArgumentParser, *, node: bool) -> None:
    """Discovery options; ``node``: those of ``dndm node`` (server, mDNS, address book)."""
    group = parser.add_argument_group("discovery options")
    group.add_argument(
        "--bootstrap-peer",
        action="append",
        metavar="MADDR",
        default=[],
        help="bootstrap node /ip4/.../tcp/.../p2p/<id>: seeds the DHT and the advert topics "
        "(repeatable)",
    )
    on = "on" if node else "on with --bootstrap-peer"
    group.add_argument(
        "--dht",
        action=argparse.BooleanOptionalAction,
        help=f"find peers through the Kademlia DHT (default {on})",
    )
    group.add_argument(
        "--gossip",
        action=argparse.BooleanOptionalAction,
        help=f"find peers through GossipSub adverts (default {on})",
    )
    if not node:
        return
    group.add_argument(
        "--bootstrap",
        action="store_true",
        help="run as a bootstrap server: a DHT server relaying every advert topic, allowing "
        f"{BOOTSTRAP_MAX_CONNECTIONS} connections",
    )
    group.add_argument(
        "--mdns",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="find peers on the LAN with mDNS (default on)",
    )
    group.add_argument(
        "--mdns-interface",
        action="append",
        metavar="IP",
        help=f"interface address mDNS runs on, and only there (repeatable; default "
        f"{DEFAULT_MDNS_INTERFACE})",
    )
    group.add_argument(
        "--address-book",
        type=Path,
        metavar="PATH",
        help=f"file keeping the addresses of peers met (default: the key file's name plus "
        f"{ADDRESS_BOOK_SUFFIX}; none without --key)",
    )
    group.add_argument(
        "--admin-socket",
        type=Path,
        metavar="PATH",
        help="Unix socket serving 'dndm routes' and 'dndm peers' (default: in "
        "$XDG_RUNTIME_DIR/dndm/ or <tmp>/dndm-<uid>/, named after --key, --name or the pid)",
    )


def _add_nat_options(parser: argparse.ArgumentParser) -> None:
    """NAT traversal options (see nat/ and docs/nat.md)."""
    group = parser.add_argument_group("NAT traversal options")
    group.add_argument(
        "--nat",
        action="store_true",
        help="NAT traversal: learn reachability (AutoNAT), reserve relay slots when private, "
        "dial relayed addresses, upgrade relayed connections (hole punching)",
    )
    group.add_argument(
        "--relay",
        action="append",
        metavar="MADDR",
        default=[],
        help="relay to reserve a slot on when private (repeatable; implies --nat)",
    )
    group.add_argument(
        "--relay-service",
        action="store_true",
        help="serve as a circuit relay for private peers, within limits (implies --nat)",
    )
    group.add_argument(
        "--hole-punching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="upgrade relayed connections to direct ones (default on with --nat)",
    )
    group.add_argument(
        "--upnp",
        action="store_true",
        help="map the listen port on the LAN's UPnP gateway while running (implies --nat)",
    )


def _nat_config(args: argparse.Namespace) -> Any:
    """The NatConfig the NAT options ask for, or None when NAT traversal is off."""
    if not (args.nat or args.relay or args.relay_service or args.upnp):
        return None
    from nat import NatConfig

    return NatConfig(
        relays=tuple(args.relay),
        relay_service=args.relay_service,
        relay_client="never" if args.relay_service else "auto",
        hole_punching=args.hole_punching,
        upnp=args.upnp,
    )


def _add_admin_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-socket",
        type=Path,
        metavar="PATH",
        help="the node's admin socket (default: from --key or --name as 'dndm node' derives "
        "it, else the only socket in the runtime directory)",
    )
    parser.add_argument("--key", type=Path, metavar="PATH", help="the node's key file")
    parser.add_argument("--name", help="the node's name (when it has no key file)")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )


def _add_type_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type",
        required=True,
        metavar="TYPE",
        help="message type: pkg.module:Message, pkg.module.Message, or a protobuf full name "
        "(with --descriptor-set, or a type already known such as dndm.demo.v1.Temperature)",
    )
    parser.add_argument(
        "--descriptor-set",
        type=Path,
        metavar="FILE",
        help="resolve --type in this file (protoc --descriptor_set_out=FILE --include_imports)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dndm",
        description="Decentralized Named Data Messaging: typed pub/sub linked by name and type.",
        epilog="Exit status: 0 ok, 2 usage or permanent error, 3 transient error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a 3-node mesh on 127.0.0.1 with no configuration")
    demo.add_argument("--count", type=_positive_int, default=5, help="messages per sensor (5)")
    demo.add_argument(
        "--period",
        type=_non_negative_float,
        default=0.05,
        help="seconds between a sensor's messages (0.05)",
    )

    keygen = commands.add_parser("keygen", help="write a new Ed25519 identity key file")
    keygen.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_KEY_FILE),
        metavar="PATH",
        help=f"key file to write, mode 0600 (default ./{DEFAULT_KEY_FILE})",
    )
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key file (a new peer id)"
    )

    commands.add_parser("sim", help="emulate DNDM meshes under virtual time (dndm sim --help)")

    node = commands.add_parser(
        "node", help="run a node until SIGINT/SIGTERM, printing events as JSON lines"
    )
    _add_node_options(node)
    _add_discovery_options(node, node=True)
    _add_nat_options(node)

    routes = commands.add_parser(
        "routes", help="list the intents and interests a running node knows of"
    )
    _add_admin_client_options(routes)
    peers = commands.add_parser("peers", help="list the peers of a running node")
    _add_admin_client_options(peers)

    pub = commands.add_parser(
        "pub", help="publish JSON lines from stdin (or generated messages) on a route"
    )
    pub.add_argument(
        "route", metavar="ROUTE", help="path (robot.arm.temp), Type@path or prefix#hash"
    )
    _add_type_options(pub)
    _add_node_options(pub)
    _add_discovery_options(pub, node=False)
    _add_nat_options(pub)
    pub.add_argument(
        "--generate",
        action="store_true",
        help="make messages up instead of reading stdin (a numeric 'seq' field counts up)",
    )
    pub.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="messages to send (default: all of stdin; with --generate, until stopped)",
    )
    pub.add_argument(
        "--rate",
        type=_non_negative_float,
        metavar="HZ",
        help=f"messages per second, 0 for as fast as possible (default: {DEFAULT_GENERATE_RATE:g} "
        "with --generate, else as fast as possible)",
    )
    pub.add_argument(
        "--wait-interest",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait until someone subscribes before sending (default: wait)",
    )
    pub.add_argument(
        "--min-interests",
        type=_positive_int,
        default=1,
        metavar="N",
        help="with --wait-interest, wait for N linked subscribers (default 1)",
    )
    pub.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for subscribers, and with --reliable for acknowledgements (30)",
    )
    pub.add_argument(
        "--reliable",
        action="store_true",
        help="before exiting, wait until every subscriber acknowledged every message or "
        "unsubscribed (exit 3 if that takes longer than --timeout)",
    )

    sub = commands.add_parser("sub", help="print the messages of a route or pattern as JSON lines")
    sub.add_argument(
        "route",
        metavar="ROUTE_OR_PATTERN",
        help="path, Type@path, prefix#hash, or a pattern with * and ** (robot.*.temp)",
    )
    _add_type_options(sub)
    _add_node_options(sub)
    _add_discovery_options(sub, node=False)
    _add_nat_options(sub)
    sub.add_argument("--count", type=_positive_int, metavar="N", help="exit after N messages")
    sub.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="with --count: exit 3 if they have not all arrived after SECONDS",
    )
    sub.add_argument(
        "--reliable",
        action="store_true",
        help="acknowledged, lossless delivery that resumes across reconnections",
    )
    sub.add_argument(
        "--depth",
        type=_positive_int,
        metavar="N",
        help=f"queue depth in messages (default {DEFAULT_DEPTH})",
    )
    sub.add_argument(
        "--overflow",
        choices=[policy.value for policy in Overflow],
        help="what a full queue does (default drop_oldest; block with --reliable)",
    )
    return parser


# -- the entry point ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of a ``dndm`` command line (usage errors raise :class:`SystemExit`)."""
    return _parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dndm`` command; returns the process exit status.

    Usage errors raise :class:`SystemExit` with status 2 (argparse).  A
    :class:`~dndm_p2p.errors.DndmError` is printed as ``dndm: error: <message>`` and gives 3 when
    it is transient, else 2.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["sim"]:  # simnet is imported only for this command
        from simnet.cli import main as sim_main

        return sim_main(words[1:])
    args = parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "demo": _cmd_demo,
        "keygen": _cmd_keygen,
        "node": _cmd_node,
        "peers": _cmd_peers,
        "pub": _cmd_pub,
        "routes": _cmd_routes,
        "sub": _cmd_sub,
    }
    try:
        with _early_signals(), _library_logging(getattr(args, "verbose", 0)):
            return commands[args.command](args)
    except BaseException as exc:
        error = _find(exc, DndmError)
        if error is not None:
            _print_error(str(error))
            return EXIT_TRANSIENT if isinstance(error, TransientError) else EXIT_PERMANENT
        if _find(exc, BrokenPipeError) is not None:
            _silence_stdout()  # the reader went away (`dndm sub ... | head`): not an error
            return EXIT_OK
        if isinstance(exc, KeyboardInterrupt) or _only(exc, KeyboardInterrupt):
            return 128 + signal.SIGINT
        raise


#: Stop signals received before a command's node was running (it then stops at once).
_early_stops: list[str] = []


@contextmanager
def _early_signals() -> Iterator[None]:
    """Until a command installs its own signal receiver, remember SIGINT/SIGTERM instead of
    dying (or raising KeyboardInterrupt) half-way through starting up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _early_stops.clear()

    def remember(signum: int, frame: object) -> None:
        _early_stops.append(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, remember) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _early_stops.clear()


@contextmanager
def _library_logging(verbosity: int) -> Iterator[None]:
    """Quiet py-libp2p's log unless asked for: what matters reaches the user as a JSON event,
    and stray log lines would break the JSON lines on stderr."""
    logger = logging.getLogger("libp2p")
    saved = logger.level
    logger.setLevel({0: logging.CRITICAL, 1: logging.WARNING}.get(verbosity, logging.DEBUG))
    if verbosity:
        logging.basicConfig(format="%(name)s: %(levelname)s: %(message)s")
    try:
        yield
    finally:
        logger.setLevel(saved)


def _find(exc: BaseException, kind: type[BaseException]) -> Any:
    """The first exception of ``kind`` in ``exc`` or the groups it is made of, else None."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            found = _find(member, kind)
            if found is not None:
                return found
    return None


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(member, kind) for member in exc.exceptions)
    return isinstance(exc, kind)


def _print_error(message: str) -> None:
    with suppress(OSError, ValueError):
        print(f"dndm: error: {message}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


# -- output -------------------------------------------------------------------------------------


class _Lines:
    """Writes JSON lines to one stream."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any], *, flush: bool = True) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        if flush:
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()


async def _event_record(node: Node, event: NodeEvent) -> dict[str, Any]:
    """The JSON record of a node event; a new peer's record carries the name from its hello."""
    record: dict[str, Any] = {"event": event.kind, "peer": event.peer}
    if event.kind == "peer_connected" and event.peer is not None:
        session = node.session(event.peer)
        if session is not None:
            # The session starts before the peer's hello (which carries its name) arrives.
            with trio.move_on_after(node.config.handshake_timeout):
                await _first_of(session.hello_received, session.ended)
        record["name"] = session.remote_name if session is not None else ""
    if event.detail:
        record["detail"] = event.detail
    return record


async def _first_of(*events: trio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


async def _print_events(
    node: Node, events: trio.MemoryReceiveChannel[NodeEvent], out: _Lines
) -> None:
    async for event in events:
        out.write(await _event_record(node, event))


async def _print_links(
    handle: Intent[Any] | Interest[Any],
    node: Node,
    out: _Lines,
    on_change: Callable[[], None] | None = None,
) -> None:
    async for event in handle.links():
        if on_change is not None:
            on_change()
        link = event.link
        out.write(
            {
                "event": "linked" if event.kind is LinkEventKind.LINKED else "unlinked",
                "route": str(link.route),
                "peer": link.peer,
                "name": _peer_name(node, link.peer),
            }
        )


def _peer_name(node: Node, peer: str | None) -> str:
    if peer is None:
        return node.name
    session = node.session(peer)
    return session.remote_name if session is not None else ""


@dataclass
class _Stop:
    """Which signal stopped the command, if one did."""

    signal: str | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@asynccontextmanager
async def _running_node(args: argparse.Namespace) -> AsyncIterator[tuple[Node, _Stop]]:
    """A node for the command's options, with SIGINT/SIGTERM turned into a clean stop.

    The block runs in a cancel scope that the first signal cancels; ``stop.signal`` then names
    the signal.
    """
    config = node_config(args)
    from dndm_p2p.node.node import Node

    stop = _Stop()
    with trio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        if _early_stops:  # a signal came while starting up: stop at once
            stop.signal = _early_stops[0]
            stop.scope.cancel()
        async with Node(config) as node, open_owned_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    stop.signal = signal.Signals(signum).name
                    stop.scope.cancel()
                    return

            nursery.start_soon(watch)
            with stop.scope:
                yield node, stop
            nursery.cancel_scope.cancel()


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The node configuration that the options of ``dndm node``, ``pub`` or ``sub`` ask for."""
    options: dict[str, Any] = {}
    if args.listen:
        options["listen"] = tuple(args.listen)
    is_node = args.command == "node"
    bootstrap = tuple(args.bootstrap_peer)
    discovery = is_node or bool(bootstrap)
    dht = discovery if args.dht is None else args.dht
    gossip = discovery if args.gossip is None else args.gossip
    relay_all = False
    if is_node:
        if args.bootstrap:
            if not dht:
                raise ConfigError("--bootstrap runs a DHT server: it cannot go with --no-dht")
            relay_all = True
            options["max_connections"] = BOOTSTRAP_MAX_CONNECTIONS
        if args.mdns:
            interfaces = tuple(args.mdns_interface or (DEFAULT_MDNS_INTERFACE,))
            options["mdns"] = MdnsConfig(interfaces=interfaces)
        book = args.address_book
        if book is None and args.key is not None:
            book = args.key.with_name(args.key.name + ADDRESS_BOOK_SUFFIX)
        options["address_book"] = book
        options["admin_socket"] = args.admin_socket or default_admin_socket(args.key, args.name)
    return NodeConfig(
        name=args.name,
        key_file=args.key,
        peers=tuple(args.peer),
        quic=args.quic,
        bootstrap=bootstrap,
        dht=DhtConfig() if dht else None,
        gossip=GossipConfig(relay_all=relay_all) if gossip else None,
        nat=_nat_config(args),
        **options,
    )


def runtime_directory() -> Path:
    """The per-user directory of admin sockets: ``$XDG_RUNTIME_DIR/dndm``, else
    ``<tmp>/dndm-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "dndm"
    return Path(tempfile.gettempdir()) / f"dndm-{os.getuid()}"


def default_admin_socket(key_file: Path | None, name: str) -> Path:
    """Where ``dndm node`` serves its admin socket when not told (see the module docstring).

    Raises :class:`ConfigError` if the runtime directory exists but is not this user's own
    private directory (anyone else could listen there in the node's place).
    """
    directory = runtime_directory()
    _check_private(directory)
    if key_file is not None:
        digest = hashlib.sha256(os.fsencode(key_file.resolve())).hexdigest()[:8]
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", key_file.stem)[:40] or "key"
        return directory / f"{stem}-{digest}.sock"
    if name:
        return directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)[:40]}.sock"
    return directory / f"node-{os.getpid()}.sock"


def _check_private(directory: Path) -> None:
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # created private (0700) when the node starts
    except OSError as exc:
        raise ConfigError(f"cannot use the runtime directory {directory}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory: pass --admin-socket")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(
            f"{directory} is not a private directory of this user (owner {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): pass --admin-socket"
        )


def _resolve_type(args: argparse.Namespace) -> type[Message]:
    return resolve_message_type(args.type, args.descriptor_set)


def _check_route(text: str, msg_type: type[Message], *, allow_pattern: bool) -> None:
    """Validate a route argument before starting a node (the node would refuse it later)."""
    if is_pattern(text):
        if not allow_pattern:
            raise ConfigError(f"{text!r} is a pattern; a publisher needs one route")
        path = text
        if "@" in text:
            type_name, _, path = text.partition("@")
            if type_name != message_full_name(msg_type):
                raise TypeMismatch(
                    f"pattern {text!r} names type {type_name!r}, but --type is "
                    f"{message_full_name(msg_type)!r}"
                )
        Pattern(path)
    elif "@" in text or "#" in text:
        parse_route(text).bind(msg_type)
    else:
        PlainRoute.of(msg_type, text)


# -- dndm demo ----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from dndm_p2p.demo import run_demo

    trio.run(run_demo, args.count, args.period)
    return EXIT_OK


# -- dndm keygen --------------------------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    path: Path = args.out
    if os.path.lexists(path) and not args.force:
        raise ConfigError(
            f"{path} already exists; refusing to replace it (that would change the node's "
            "peer id): pass --force to replace it"
        )
    from dndm_p2p.host.identity import generate_identity, peer_id_of, save_identity

    key_pair = generate_identity()
    save_identity(key_pair, path, overwrite=args.force)
    print(peer_id_of(key_pair), flush=True)
    print(f"dndm: wrote identity key file {path} (mode 0600)", file=sys.stderr, flush=True)
    return EXIT_OK


# -- dndm node ----------------------------------------------------------------------------------


def _cmd_node(args: argparse.Namespace) -> int:
    return trio.run(_run_node, args)


async def _run_node(args: argparse.Namespace) -> int:
    out = _Lines(sys.stdout)
    async with _running_node(args) as (node, stop), node.events() as events:
        admin_socket = node.config.admin_socket
        out.write(
            {
                "event": "listening",
                "peer": node.peer_id,
                "name": node.name,
                "addrs": node.addrs,
                "admin_socket": None if admin_socket is None else str(admin_socket),
            }
        )
        await _print_events(node, events, out)
    out.write({"event": "stopped", "signal": stop.signal})
    return EXIT_OK


# -- dndm routes, dndm peers ---------------------------------------------------------------------


def _cmd_routes(args: argparse.Namespace) -> int:
    from dndm_p2p.node.admin import query_routes

    path = _admin_socket_of(args)
    routes = trio.run(query_routes, path)
    columns = ("route", "kind", "origin", "peer", "msg_type", "linked")
    _print_records([dataclasses.asdict(route) for route in routes], columns, json_lines=args.json)
    return EXIT_OK


def _cmd_peers(args: argparse.Namespace) -> int:
    from dndm_p2p.node.admin import query_peers

    path = _admin_socket_of(args)
    peers = trio.run(query_peers, path)
    columns = ("peer", "name", "rtt_us", "addrs", "routes")
    _print_records([dataclasses.asdict(peer) for peer in peers], columns, json_lines=args.json)
    return EXIT_OK


def _admin_socket_of(args: argparse.Namespace) -> Path:
    """The admin socket that ``dndm routes``/``peers`` should ask (see the module docstring)."""
    if args.admin_socket is not None:
        return Path(args.admin_socket)
    if args.key is not None or args.name:
        return default_admin_socket(args.key, args.name or "")
    directory = runtime_directory()
    try:
        found = sorted(p for p in directory.iterdir() if p.is_socket())
    except FileNotFoundError:
        found = []
    except OSError as exc:
        raise ConfigError(f"cannot list the runtime directory {directory}: {exc}") from exc
    if not found:
        raise Unavailable(
            f"no node's admin socket in {directory}: is a 'dndm node' running? (or pass "
            "--admin-socket, --key or --name)"
        )
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise ConfigError(
            f"several admin sockets in {directory} ({listed}): choose one with "
            "--admin-socket, --key or --name"
        )
    return found[0]


def _print_records(
    records: list[dict[str, Any]], columns: Sequence[str], *, json_lines: bool
) -> None:
    """Records as JSON lines, or as a table with a header line (lists joined by commas)."""
    if json_lines:
        out = _Lines(sys.stdout)
        for record in records:
            out.write(record, flush=False)
        out.flush()
        return
    rows = [[column.upper() for column in columns]]
    for record in records:
        rows.append([_cell(record[column]) for column in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())
    sys.stdout.flush()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


# -- dndm pub -----------------------------------------------------------------------------------


def _cmd_pub(args: argparse.Namespace) -> int:
    msg_type = _resolve_type(args)
    _check_route(args.route, msg_type, allow_pattern=False)
    rate = args.rate
    if rate is None:
        rate = DEFAULT_GENERATE_RATE if args.generate else 0.0
    if not args.generate and sys.stdin is None:
        raise ConfigError("there is no stdin to read messages from; use --generate")
    if not args.generate and sys.stdin.isatty():
        print(
            "dndm pub: reading JSON messages from stdin, one per line (--generate makes them up)",
            file=sys.stderr,
            flush=True,
        )
    return trio.run(_run_pub, args, msg_type, rate)


async def _run_pub(args: argparse.Namespace, msg_type: type[Message], rate: float) -> int:
    status = _Lines(sys.stderr)
    sent = unrouted = 0
    async with _running_node(args) as (node, stop), node.events() as events:
        status.write({"event": "listening", "peer": node.peer_id, "addrs": node.addrs})
        async with node.publish(args.route, msg_type) as intent, open_owned_nursery() as tasks:
            tasks.start_soon(_print_events, node, events, status)
            deliveries = _Deliveries(intent, node)
            tasks.start_soon(_print_links, intent, node, status, deliveries.refresh)
            if args.wait_interest:
                await _wait_interest(intent, node, args.min_interests, args.timeout)
            counter = [0]
            try:
                if args.generate:
                    await _send_generated(intent, msg_type, args.count, rate, counter)
                else:
                    await _send_stdin(intent, msg_type, args.count, rate, counter)
            finally:
                sent, unrouted = counter[0], intent.stats.unrouted
            await deliveries.drain(reliable=args.reliable, seconds=args.timeout)
            tasks.cancel_scope.cancel()
    status.write(
        {
            "event": "done",
            "sent": sent,
            "unrouted": unrouted,  # sent while nobody was subscribed
            "signal": stop.signal,
        }
    )
    return EXIT_OK


async def _wait_interest(intent: Intent[Any], node: Node, wanted: int, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await intent.wait_links(lambda links: len(links) >= wanted)
        return
    peers = len(node.peers())
    raise NoInterest(
        f"{len(intent.interests)} of {wanted} subscriber(s) of {intent.route} linked within "
        f"{seconds:g} s ({peers} peer(s) connected); use --timeout, or --no-wait-interest to "
        "send anyway"
    )


async def _pace(start: float, index: int, rate: float) -> None:
    if rate > 0:
        await trio.sleep_until(start + index / rate)


async def _send_generated(
    intent: Intent[Any], msg_type: type[Message], count: int | None, rate: float, counter: list[int]
) -> None:
    start = trio.current_time()
    seq = 0
    while count is None or seq < count:
        if rate > 0:
            await _pace(start, seq, rate)
            seq += 1
            await intent.send(generate_message(msg_type, seq))
            counter[0] += 1
            continue
        n = _SEND_CHUNK if count is None else min(_SEND_CHUNK, count - seq)
        now = time.time_ns()
        batch = [generate_message(msg_type, seq + i + 1, now_ns=now) for i in range(n)]
        await intent.send_many(batch)
        seq += n
        counter[0] += n


async def _send_stdin(
    intent: Intent[Any], msg_type: type[Message], count: int | None, rate: float, counter: list[int]
) -> None:
    start = trio.current_time()
    line_number = 0
    async for lines in _stdin_lines():
        batch: list[Message] = []
        for line in lines:
            line_number += 1
            if not line.strip():
                continue
            try:
                batch.append(message_from_json(line, msg_type))
            except ConfigError as exc:
                raise ConfigError(f"stdin line {line_number}: {exc}") from None
        if count is not None:
            batch = batch[: count - counter[0]]
        if rate > 0:
            for msg in batch:
                await _pace(start, counter[0], rate)
                await intent.send(msg)
                counter[0] += 1
        elif batch:
            await intent.send_many(batch)
            counter[0] += len(batch)
        if count is not None and counter[0] >= count:
            return


async def _stdin_lines() -> AsyncIterator[list[bytes]]:
    """Complete lines of stdin, as they arrive, read by a worker thread (never blocking trio)."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        read = functools.partial(os.read, fd, 1 << 16)
        # mypy misreads run_sync's keyword-only parameters after *args: Unpack[Ts].
        chunk = await trio.to_thread.run_sync(read, abandon_on_cancel=True)  # type: ignore[call-arg]
        if not chunk:
            if pending:
                yield [pending]
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            yield lines


class _Deliveries:
    """What each remote subscriber of an intent has not acknowledged yet.

    Every data link acknowledges what it delivered (reliable or not), so the publisher knows
    when the last message arrived.  The links are remembered as they appear, so that a reliable
    link whose subscriber went away (it stays linked for a grace period, in case the subscriber
    comes back) is still judged by what it had acknowledged.
    """

    def __init__(self, intent: Intent[Any], node: Node) -> None:
        self._intent = intent
        self._node = node
        self._links: dict[tuple[str, int], OutboundLink] = {}

    def refresh(self) -> None:
        """Remember the data links that now carry the intent's route."""
        route = self._intent.route
        for info in self._intent.interests:
            session = self._node.session(info.peer) if info.peer is not None else None
            if session is None:
                continue
            for link in session.outbound:
                if link.route == route:
                    self._links[(link.peer, link.link_id)] = link

    def behind(self) -> dict[str, int]:
        """Messages not acknowledged yet, by peer (a link not seen yet counts as one)."""
        self.refresh()
        behind: dict[str, int] = {}
        for info in self._intent.interests:
            if info.peer is None:
                continue
            link = self._links.get((info.peer, info.handle_id))
            pending = 1 if link is None else len(link.queue) + link.next_sequence - 1 - link.acked
            if pending > 0:
                behind[info.peer] = behind.get(info.peer, 0) + pending
        return behind

    async def drain(self, *, reliable: bool, seconds: float) -> None:
        """Wait until every remote subscriber acknowledged everything sent.

        Without ``reliable`` it gives up quietly after a few seconds; with it, it raises
        :class:`Unavailable` after ``seconds``.
        """
        limit = seconds if reliable else min(seconds, _BEST_EFFORT_DRAIN)
        with trio.move_on_after(limit):
            while True:
                if not self.behind():
                    return
                await trio.sleep(_DRAIN_POLL)  # acknowledgements come with no event to wait for
        behind = self.behind()
        if reliable and behind:
            detail = ", ".join(f"{peer}: {count}" for peer, count in sorted(behind.items()))
            raise Unavailable(f"messages not acknowledged within {seconds:g} s ({detail})")


# -- dndm sub -----------------------------------------------------------------------------------


def _cmd_sub(args: argparse.Namespace) -> int:
    msg_type = _resolve_type(args)
    _check_route(args.route, msg_type, allow_pattern=True)
    if args.reliable and args.overflow not in (None, Overflow.BLOCK.value):
        raise ConfigError("--reliable needs --overflow block (nothing may be dropped)")
    return trio.run(_run_sub, args, msg_type)


async def _run_sub(args: argparse.Namespace, msg_type: type[Message]) -> int:
    status = _Lines(sys.stderr)
    out = _Lines(sys.stdout)
    received = 0
    options: dict[str, Any] = {"depth": args.depth, "overflow": args.overflow}
    if args.reliable:
        options["reliable"] = True
    async with _running_node(args) as (node, stop), node.events() as events:
        status.write({"event": "listening", "peer": node.peer_id, "addrs": node.addrs})
        interest = node.subscribe(args.route, msg_type, **options)
        async with interest, open_owned_nursery() as tasks:
            tasks.start_soon(_print_events, node, events, status)
            tasks.start_soon(_print_links, interest, node, status)
            count: int | None = args.count
            deadline = math.inf if args.timeout is None else trio.current_time() + args.timeout
            with trio.move_on_at(deadline) as timer:
                while count is None or received < count:
                    limit = 1024 if count is None else min(1024, count - received)
                    batch = await interest.receive_batch(limit)
                    route, sender = _origin(interest)
                    now = time.time_ns()
                    for msg in batch:
                        out.write(
                            {
                                "route": route,
                                "sender": sender,
                                "latency_us": latency_us(msg, now_ns=now),
                                "payload": message_to_dict(msg),
                            },
                            flush=False,
                        )
                    out.flush()
                    received += len(batch)
                if count is not None:
                    await _settle()
                interest.close()  # unsubscribe (the publishers are told) before the node stops
            tasks.cancel_scope.cancel()
            if timer.cancelled_caught and count is not None and received < count:
                raise Unavailable(
                    f"received {received} of {count} messages within {args.timeout:g} s"
                )
    status.write({"event": "done", "received": received, "signal": stop.signal})
    return EXIT_OK


async def _settle(seconds: float = _SETTLE_LIMIT) -> None:
    """Let the node finish what it is doing (at most ``seconds``): here, acknowledging the last
    messages received, so that a publisher waiting for acknowledgements learns that they
    arrived before this subscriber goes away.

    Needed because the node sends no last acknowledgement when a subscription closes, and an
    acknowledgement still being written when it closes is abandoned (the publisher then keeps
    a reliable link open for its grace period).
    """
    with trio.move_on_after(seconds):
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


def _origin(interest: Interest[Any]) -> tuple[str, str | None]:
    """The route and sender to print: those of the one linked intent, if there is exactly one.

    Otherwise the route is the subscription's own (a pattern for a pattern interest) and the
    sender is unknown (``None``).
    """
    intents: frozenset[LinkInfo] = interest.intents
    if len(intents) == 1:
        (only,) = intents
        return str(only.route), only.peer
    return str(interest.link.route), None


if __name__ == "__main__":
    raise SystemExit(main())
