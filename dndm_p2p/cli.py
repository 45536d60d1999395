"""The ``dndm`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import trio

from .demo import run_demo

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dndm", description="Decentralized Named Data Messaging")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a small message bus with no configuration")
    demo.add_argument("--count", type=int, default=5, help="messages per sensor (default 5)")
    demo.add_argument(
        "--period", type=float, default=0.05, help="seconds between messages (default 0.05)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dndm`` command; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        if args.count < 1 or args.period < 0:
            raise SystemExit("dndm demo: --count must be positive and --period not negative")
        trio.run(run_demo, args.count, args.period)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
