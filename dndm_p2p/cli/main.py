"""The entry point of ``dndm``: the parser assembled from the commands, the mapping of errors
to exit statuses, early signals and py-libp2p's log level around each built-in command."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dndm_p2p.cli import demo, introspect, keygen, node, pub, sub
from dndm_p2p.cli.exitcodes import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT
from dndm_p2p.cli.output import print_error, silence_stdout
from dndm_p2p.cli.plugins import Handler, Register, add_plugin_commands
from dndm_p2p.cli.signals import early_signals
from dndm_p2p.errors import DndmError, TransientError

__all__ = ["BUILTIN_COMMANDS", "CommandLine", "command_line", "main", "parse_args"]

#: The built-in commands by name, in the order ``dndm --help`` lists them (plugins come after).
BUILTIN_COMMANDS: dict[str, Register] = {
    "demo": demo.register,
    "keygen": keygen.register,
    "node": node.register,
    "routes": introspect.register_routes,
    "peers": introspect.register_peers,
    "pub": pub.register,
    "sub": sub.register,
}


@dataclass(frozen=True)
class CommandLine:
    """The ``dndm`` parser and the handlers of its commands, by name."""

    parser: argparse.ArgumentParser
    builtins: dict[str, Handler]
    plugins: dict[str, Handler]


def command_line() -> CommandLine:
    """The ``dndm`` parser with the built-in commands and every installed plugin command."""
    parser = argparse.ArgumentParser(
        prog="dndm",
        description="Decentralized Named Data Messaging: typed pub/sub linked by name and type.",
        epilog="Exit status: 0 ok, 2 usage or permanent error, 3 transient error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    builtins = {name: register(commands) for name, register in BUILTIN_COMMANDS.items()}
    return CommandLine(parser, builtins, add_plugin_commands(commands))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of a ``dndm`` command line (usage errors raise :class:`SystemExit`)."""
    return command_line().parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dndm`` command; returns the process exit status.

    Usage errors raise :class:`SystemExit` with status 2 (argparse).  For a built-in command, a
    :class:`~dndm_p2p.errors.DndmError` is printed as ``dndm: error: <message>`` and gives 3
    when it is transient, else 2; a closed stdout gives 0 and a KeyboardInterrupt gives 130.
    A plugin command's handler runs as it is (see :mod:`dndm_p2p.cli.plugins`).
    """
    line = command_line()
    args = line.parser.parse_args(argv)
    plugin = line.plugins.get(args.command)
    if plugin is not None:
        return plugin(args)
    try:
        with early_signals(), _library_logging(getattr(args, "verbose", 0)):
            return line.builtins[args.command](args)
    except BaseException as exc:
        error = _find(exc, DndmError)
        if error is not None:
            print_error(str(error))
            return EXIT_TRANSIENT if isinstance(error, TransientError) else EXIT_PERMANENT
        if _find(exc, BrokenPipeError) is not None:
            silence_stdout()  # the reader went away (`dndm sub ... | head`): not an error
            return EXIT_OK
        if isinstance(exc, KeyboardInterrupt) or _only(exc, KeyboardInterrupt):
            return 128 + signal.SIGINT
        raise


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
    """Whether ``exc`` is of ``kind``, or a group made only of such exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(member, kind) for member in exc.exceptions)
    return isinstance(exc, kind)


if __name__ == "__main__":
    raise SystemExit(main())
