"""Options shared by several commands: argument types, option groups, and the message type and
route arguments of ``dndm pub`` and ``dndm sub``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from google.protobuf.message import Message

from dndm_p2p.cli.msgtypes import resolve_message_type
from dndm_p2p.core.pattern import Pattern, is_pattern
from dndm_p2p.core.route import PlainRoute, message_full_name, parse_route
from dndm_p2p.errors import ConfigError, TypeMismatch

__all__ = [
    "ADDRESS_BOOK_SUFFIX",
    "BOOTSTRAP_MAX_CONNECTIONS",
    "DEFAULT_MDNS_INTERFACE",
    "add_discovery_options",
    "add_nat_options",
    "add_node_options",
    "add_type_options",
    "check_route",
    "message_type",
    "non_negative_float",
    "positive_float",
    "positive_int",
]

#: Most connections of ``dndm node --bootstrap`` (a well-known entry point for many peers).
BOOTSTRAP_MAX_CONNECTIONS = 1000
#: Interface address of mDNS discovery without ``--mdns-interface``.
DEFAULT_MDNS_INTERFACE = "127.0.0.1"
#: Suffix added to the key file's name to name the default address book.
ADDRESS_BOOK_SUFFIX = ".addressbook"


# -- argument types -----------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An integer >= 1 (else :class:`argparse.ArgumentTypeError`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (else :class:`argparse.ArgumentTypeError`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (else :class:`argparse.ArgumentTypeError`)."""
    value = non_negative_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


# -- option groups ------------------------------------------------------------------------------


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """The options of the node a command runs (listen, key, peers, name, QUIC, verbosity)."""
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


def add_discovery_options(parser: argparse.ArgumentParser, *, node: bool) -> None:
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


def add_nat_options(parser: argparse.ArgumentParser) -> None:
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


# -- the message type and the route -------------------------------------------------------------


def add_type_options(parser: argparse.ArgumentParser) -> None:
    """``--type`` (required) and ``--descriptor-set``: the message type of pub and sub."""
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


def message_type(args: argparse.Namespace) -> type[Message]:
    """The message class that the type options name (:class:`ConfigError` if none)."""
    return resolve_message_type(args.type, args.descriptor_set)


def check_route(text: str, msg_type: type[Message], *, allow_pattern: bool) -> None:
    """Validate a route argument before starting a node (the node would refuse it later).

    Raises :class:`RouteError` for a malformed route, :class:`ConfigError` for a pattern where
    ``allow_pattern`` is false, and :class:`TypeMismatch` if the route names another type than
    ``msg_type``.
    """
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
