"""``dndm sim``: run simulation scenarios, report on runs, compare two runs.

* ``dndm sim run SCENARIO [--nodes N] [--seed S] [--out DIR] [--watchdog SECONDS]``:
  SCENARIO is a TOML file or the name of a stock scenario (``dndm sim list``).  Shows a
  progress bar in virtual time with the estimated wall time left, then the headline figures;
  the run directory holds the events, manifest, tables and plots.
* ``dndm sim report RUN``: (re)write the tables and plots of a run directory.
* ``dndm sim compare RUN_A RUN_B [--out DIR]``: the two runs side by side.
* ``dndm sim list``: the stock scenarios.

Exit status: 0 ok, 1 a run was aborted (watchdog), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dndm_p2p.cli.options import positive_float, positive_int
from protocols.errors import ConfigError

# The runner, the reports and the scenarios (py-libp2p under them) are imported by the handler
# only: ``dndm`` registers this command on every run, whatever the command (see register).
if TYPE_CHECKING:
    from dndm_p2p.cli.plugins import Commands, Handler
    from simnet.runner import Progress

__all__ = ["ProgressBar", "main", "parser", "register"]

_DESCRIPTION = "Emulate DNDM meshes: real nodes on an emulated network under virtual time."

_HEADLINE_KEYS = (
    "speedup",
    "speedup_steady",
    "peak_rss_per_node_mb",
    "discovery_success",
    "discovery_s_p50",
    "discovery_s_p95",
    "delivery_ratio_all",
    "delivery_ratio_steady",
    "delivery_s_p95",
)


def parser() -> argparse.ArgumentParser:
    """The ``dndm sim`` argument parser."""
    top = argparse.ArgumentParser(prog="dndm sim", description=_DESCRIPTION)
    _add_commands(top)
    return top


def register(commands: Commands) -> Handler:
    """Add ``sim`` to the ``dndm`` parser's ``commands``; returns its handler.

    The ``dndm.commands`` entry point of this distribution (see :mod:`dndm_p2p.cli.plugins`).
    """
    sim = commands.add_parser(
        "sim",
        help="emulate DNDM meshes under virtual time (dndm sim --help)",
        description=_DESCRIPTION,
    )
    _add_commands(sim)
    return lambda args: _run(args, sys.stdout)


def _add_commands(top: argparse.ArgumentParser) -> None:
    commands = top.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a scenario (a TOML file or a stock name)")
    run.add_argument("scenario", help="scenario file, or a stock scenario name")
    run.add_argument("--nodes", type=positive_int, help="number of nodes (scenario's default)")
    run.add_argument("--seed", type=int, help="seed (scenario's default)")
    run.add_argument("--out", type=Path, help="run directory (default runs/<name>-…)")
    run.add_argument("--watchdog", type=positive_float, help="wall-time limit in seconds")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    report = commands.add_parser("report", help="write the tables and plots of a run")
    report.add_argument("run", type=Path)
    compare = commands.add_parser("compare", help="compare two runs side by side")
    compare.add_argument("run_a", type=Path)
    compare.add_argument("run_b", type=Path)
    compare.add_argument("--out", type=Path, help="output directory (default RUN_B/compare)")
    commands.add_parser("list", help="list the stock scenarios")


class ProgressBar:
    """Draws a run's progress on one terminal line: phase, bar, virtual time, ETA."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.drawn = False

    def __call__(self, progress: Progress) -> None:
        """Redraw for ``progress``."""
        filled = round(self.width * min(max(progress.fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        if progress.phase == "join":
            where = f"join {progress.nodes_up}/{progress.nodes_total} nodes up"
        else:
            total = f"/{progress.virtual_total:.0f}" if progress.virtual_total else ""
            where = f"virtual {progress.virtual:.1f}{total} s, {progress.nodes_up} up"
        eta = f"~{_duration(progress.eta)} left" if progress.eta is not None else "estimating"
        line = f"\r[{bar}] {where}, wall {_duration(progress.wall)}, {eta}"
        self.stream.write(line.ljust(100)[:100])
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _print_headline(summary: dict[str, object], out: TextIO) -> None:
    from simnet.report import HEADLINE, format_value

    labels = {key: (label, unit) for key, label, unit in HEADLINE}
    for key in _HEADLINE_KEYS:
        label, unit = labels[key]
        out.write(f"  {label}: {format_value(summary.get(key), unit)}\n")


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from simnet.report import load_run
    from simnet.runner import check_out_dir, default_run_dir, run_scenario
    from simnet.scenario import load_scenario

    scenario = load_scenario(args.scenario).with_overrides(nodes=args.nodes, seed=args.seed)
    if args.watchdog is not None:
        scenario = dataclasses.replace(scenario, watchdog=args.watchdog)
    run_dir: Path = args.out if args.out is not None else default_run_dir(scenario)
    check_out_dir(run_dir)
    bar = None if args.quiet else ProgressBar(sys.stderr)
    out.write(f"running {scenario.name}: {scenario.nodes} nodes, seed {scenario.seed}")
    out.write(f" -> {run_dir}\n")
    try:
        result = run_scenario(scenario, run_dir, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    _, data = load_run(run_dir)
    _print_headline(data.summary, out)
    out.write(f"report: {run_dir / 'summary.md'}\n")
    if result.aborted:
        out.write(f"aborted: {result.aborted}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``dndm sim``; returns the exit status."""
    return _run(parser().parse_args(argv), out if out is not None else sys.stdout)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the ``dndm sim`` subcommand that ``args`` name, writing to ``out``; the exit status."""
    from simnet.report import compare_runs, write_report
    from simnet.scenario import stock_scenarios

    try:
        if args.sim_command == "run":
            return _cmd_run(args, out)
        if args.sim_command == "report":
            summary = write_report(args.run)
            _print_headline(summary, out)
            out.write(f"report: {args.run / 'summary.md'}\n")
        elif args.sim_command == "compare":
            target = compare_runs(args.run_a, args.run_b, args.out or args.run_b / "compare")
            out.write(f"comparison: {target}\n")
        else:
            for name in stock_scenarios():
                out.write(f"{name}\n")
    except ConfigError as exc:
        sys.stderr.write(f"dndm sim: error: {exc}\n")
        return 2
    return 0
