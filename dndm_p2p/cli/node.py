"""``dndm node``: run a node until SIGINT/SIGTERM, printing its events as JSON lines on stdout
(``listening`` first, ``stopped`` last)."""

from __future__ import annotations

import argparse
import sys

import trio

from dndm_p2p.cli.events import print_events
from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.options import add_discovery_options, add_nat_options, add_node_options
from dndm_p2p.cli.output import JsonLines
from dndm_p2p.cli.plugins import Commands, Handler
from dndm_p2p.cli.running import running_node

__all__ = ["register"]


def register(commands: Commands) -> Handler:
    """Add ``dndm node`` to ``commands``; returns its handler."""
    node = commands.add_parser(
        "node", help="run a node until SIGINT/SIGTERM, printing events as JSON lines"
    )
    add_node_options(node)
    add_discovery_options(node, node=True)
    add_nat_options(node)
    return _run


def _run(args: argparse.Namespace) -> int:
    return trio.run(_run_node, args)


async def _run_node(args: argparse.Namespace) -> int:
    out = JsonLines(sys.stdout)
    async with running_node(args) as (node, stop), node.events() as events:
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
        await print_events(node, events, out)
    out.write({"event": "stopped", "signal": stop.signal})
    return EXIT_OK
