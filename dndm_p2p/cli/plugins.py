"""Commands that other distributions add to ``dndm``, found through packaging entry points.

The contract
------------

A distribution adds a command ``dndm NAME`` by declaring an entry point in the group
:data:`ENTRY_POINT_GROUP` (``dndm.commands``), named after the command and referring to a
*register* function::

    [project.entry-points."dndm.commands"]
    sim = "simnet.cli:register"

``register(commands)`` receives the ``dndm`` parser's subcommands (the object that
``argparse.ArgumentParser.add_subparsers`` returns) and must:

* add exactly one subparser, named like the entry point (``commands.add_parser(NAME, ...)``),
  with its options and subcommands, whose dests do not include ``command`` (``dndm``'s own);
* return the *handler*: a function that takes the parsed :class:`argparse.Namespace` and
  returns the process exit status;
* be cheap: ``dndm`` registers every plugin on each run, before any command starts, so the
  plugin's module must defer heavy imports to its handler.

The handler runs as it is: ``dndm`` neither installs signal handlers, nor sets up logging, nor
maps exceptions to exit statuses for it (those of the built-in commands are ``dndm``'s own).

A plugin cannot replace a built-in command or an earlier plugin: a name already taken is
skipped.  A plugin that fails to load or register still appears as a command, which prints
``dndm: error: command NAME is unavailable: ...`` and exits with status 2.  Without the entry
point (a distribution installed before it was declared), the command does not exist and
``dndm`` reports it as an invalid choice, like any unknown command.

The built-in commands (:mod:`dndm_p2p.cli.main`) are registered through the same
:data:`Register` signature.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import TypeAlias

from dndm_p2p.cli.exitcodes import EXIT_PERMANENT
from dndm_p2p.cli.output import print_error

__all__ = ["ENTRY_POINT_GROUP", "Commands", "Handler", "Register", "add_plugin_commands"]

#: The entry-point group of ``dndm`` commands contributed by other distributions.
ENTRY_POINT_GROUP = "dndm.commands"

#: The ``dndm`` parser's subcommands, as ``add_subparsers`` returns them.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: Runs a command from its parsed options; returns the exit status.
Handler: TypeAlias = Callable[[argparse.Namespace], int]
#: Adds one command's subparser to the ``dndm`` parser and returns the command's handler.
Register: TypeAlias = Callable[[Commands], Handler]


def add_plugin_commands(
    commands: Commands, found: Iterable[EntryPoint] | None = None
) -> dict[str, Handler]:
    """Register the plugin commands of ``found`` (by default, every installed entry point of
    :data:`ENTRY_POINT_GROUP`) on ``commands``; returns their handlers by command name.

    Follows the contract of the module docstring: taken names are skipped, and a plugin that
    fails becomes a command that reports the failure.
    """
    if found is None:
        found = entry_points(group=ENTRY_POINT_GROUP)
    handlers: dict[str, Handler] = {}
    for entry in found:
        if entry.name in commands.choices:
            continue
        try:
            register = entry.load()
            handler = register(commands)
            if entry.name not in commands.choices:
                raise LookupError(f"it added no command named {entry.name!r}")
        except Exception as exc:  # a broken plugin must not break the other commands
            handler = _unavailable(commands, entry, exc)
        handlers[entry.name] = handler
    return handlers


def _unavailable(commands: Commands, entry: EntryPoint, exc: Exception) -> Handler:
    """A command standing for a plugin that failed: it reports why, with status 2."""
    reason = f"cannot load {entry.value} ({type(exc).__name__}: {exc})"
    if entry.name not in commands.choices:
        parser = commands.add_parser(entry.name, help=f"unavailable: {reason}", add_help=False)
        parser.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def report(args: argparse.Namespace) -> int:
        print_error(f"command {entry.name} is unavailable: {reason}")
        return EXIT_PERMANENT

    return report
