"""``dndm routes`` and ``dndm peers``: ask a running node, through its admin socket, for the
routes it knows of and the peers it has; print a table, or JSON lines with ``--json``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import trio

from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.output import print_records
from dndm_p2p.cli.plugins import Commands, Handler
from dndm_p2p.cli.runtime import find_admin_socket

__all__ = ["register_peers", "register_routes"]


def register_routes(commands: Commands) -> Handler:
    """Add ``dndm routes`` to ``commands``; returns its handler."""
    routes = commands.add_parser(
        "routes", help="list the intents and interests a running node knows of"
    )
    _add_admin_client_options(routes)
    return _routes


def register_peers(commands: Commands) -> Handler:
    """Add ``dndm peers`` to ``commands``; returns its handler."""
    peers = commands.add_parser("peers", help="list the peers of a running node")
    _add_admin_client_options(peers)
    return _peers


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


def _routes(args: argparse.Namespace) -> int:
    from dndm_p2p.node.admin import query_routes

    routes = trio.run(query_routes, _admin_socket_of(args))
    columns = ("route", "kind", "origin", "peer", "msg_type", "linked")
    print_records([dataclasses.asdict(route) for route in routes], columns, json_lines=args.json)
    return EXIT_OK


def _peers(args: argparse.Namespace) -> int:
    from dndm_p2p.node.admin import query_peers

    peers = trio.run(query_peers, _admin_socket_of(args))
    columns = ("peer", "name", "rtt_us", "addrs", "routes")
    print_records([dataclasses.asdict(peer) for peer in peers], columns, json_lines=args.json)
    return EXIT_OK


def _admin_socket_of(args: argparse.Namespace) -> Path:
    return find_admin_socket(args.admin_socket, args.key, args.name or "")
