"""``dndm demo``: a 3-node mesh on 127.0.0.1 with no configuration."""

from __future__ import annotations

import argparse

import trio

from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.options import non_negative_float, positive_int
from dndm_p2p.cli.plugins import Commands, Handler

__all__ = ["register"]


def register(commands: Commands) -> Handler:
    """Add ``dndm demo`` to ``commands``; returns its handler."""
    demo = commands.add_parser("demo", help="run a 3-node mesh on 127.0.0.1 with no configuration")
    demo.add_argument("--count", type=positive_int, default=5, help="messages per sensor (5)")
    demo.add_argument(
        "--period",
        type=non_negative_float,
        default=0.05,
        help="seconds between a sensor's messages (0.05)",
    )
    return _run


def _run(args: argparse.Namespace) -> int:
    from dndm_p2p.demo import run_demo

    trio.run(run_demo, args.count, args.period)
    return EXIT_OK
