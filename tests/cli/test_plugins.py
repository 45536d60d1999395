"""Commands added to ``dndm`` by other distributions: the ``dndm.commands`` entry points."""

from __future__ import annotations

import argparse
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from dndm_p2p.cli.main import BUILTIN_COMMANDS, main, parse_args
from dndm_p2p.cli.plugins import ENTRY_POINT_GROUP, Commands, Handler, add_plugin_commands

ROOT = Path(__file__).resolve().parents[2]
SIM = importlib.metadata.EntryPoint("sim", "simnet.cli:register", ENTRY_POINT_GROUP)


def fake_distribution(root: Path, entry_points: str) -> Path:
    """A distribution's installed metadata under ``root`` (what pip writes into site-packages)."""
    info = root / "dndm_plugin_probe-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dndm-plugin-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed metadata declaring no ``dndm`` command (an install older than the group)."""
    monkeypatch.setattr("dndm_p2p.cli.plugins.entry_points", lambda group: ())


def subcommands() -> tuple[argparse.ArgumentParser, Commands]:
    parser = argparse.ArgumentParser(prog="dndm")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def test_pyproject_declares_sim_as_a_dndm_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert declared == {"sim": "simnet.cli:register"}
    assert callable(SIM.load())


def test_the_loader_finds_sim_in_installed_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(
        str(fake_distribution(tmp_path, f"[{ENTRY_POINT_GROUP}]\nsim = simnet.cli:register\n"))
    )
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert "sim" in found.names
    _, commands = subcommands()
    handlers = add_plugin_commands(commands)
    assert "sim" in handlers
    assert "sim" in commands.choices
    assert main(["sim", "list"]) == 0
    assert "baseline" in capsys.readouterr().out.split()


def test_a_plugin_command_parses_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser, commands = subcommands()
    handlers = add_plugin_commands(commands, [SIM])
    args = parser.parse_args(["sim", "run", "baseline", "--nodes", "3", "--quiet"])
    assert (args.command, args.sim_command, args.nodes, args.quiet) == ("sim", "run", 3, True)
    assert handlers["sim"](parser.parse_args(["sim", "list"])) == 0
    assert "baseline" in capsys.readouterr().out.split()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["sim", "run", "baseline", "--nodes", "0"])
    assert exit_info.value.code == 2
    assert "usage: dndm sim run" in capsys.readouterr().err


@pytest.mark.usefixtures("no_plugins")
def test_without_the_entry_point_sim_is_an_unknown_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "list"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'sim'" in capsys.readouterr().err
    assert parse_args(["keygen", "--force"]).force is True


def test_a_broken_plugin_is_a_command_that_reports_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = [
        importlib.metadata.EntryPoint("gone", "no_such_module_xyz:register", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("absent", "simnet.cli:no_such_name", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("sim", "simnet.cli:register", ENTRY_POINT_GROUP),
    ]
    parser, commands = subcommands()
    handlers = add_plugin_commands(commands, broken)
    assert list(handlers) == ["gone", "absent", "sim"]
    assert handlers["gone"](parser.parse_args(["gone", "run", "x", "--flag"])) == 2
    err = capsys.readouterr().err
    assert "dndm: error: command gone is unavailable: cannot load no_such_module_xyz:" in err
    assert "ModuleNotFoundError" in err
    assert handlers["absent"](parser.parse_args(["absent"])) == 2
    assert "AttributeError" in capsys.readouterr().err


def register_another_name(commands: Commands) -> Handler:
    """A plugin breaking the contract: its command is not named like its entry point."""
    commands.add_parser("other")
    return lambda args: 0


def test_a_plugin_that_adds_no_command_of_its_name_is_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = importlib.metadata.EntryPoint(
        "named", f"{__name__}:register_another_name", ENTRY_POINT_GROUP
    )
    parser, commands = subcommands()
    handlers = add_plugin_commands(commands, [entry])
    assert handlers["named"](parser.parse_args(["named"])) == 2
    assert "it added no command named 'named'" in capsys.readouterr().err


def test_a_plugin_cannot_replace_a_builtin_command() -> None:
    parser, commands = subcommands()
    builtins = {name: register(commands) for name, register in BUILTIN_COMMANDS.items()}
    assert list(commands.choices) == list(BUILTIN_COMMANDS)  # each adds the command it names
    taken = importlib.metadata.EntryPoint("node", "simnet.cli:register", ENTRY_POINT_GROUP)
    assert add_plugin_commands(commands, [taken, SIM]).keys() == {"sim"}
    assert "node" in builtins
    assert parser.parse_args(["node", "--no-mdns"]).mdns is False
