"""Scenario files: reading one from disk (:func:`load_scenario`), and the stock scenarios.

The stock scenarios are the TOML files in ``simnet/scenarios/``; a stock scenario's name may
stand for its path wherever a scenario file is asked for.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

from protocols.errors import ConfigError
from simnet.scenario.parse import parse_scenario
from simnet.scenario.specs import Scenario

__all__ = ["STOCK_DIR", "load_scenario", "stock_scenario", "stock_scenarios"]

#: Where the stock scenarios live.
STOCK_DIR: Final = Path(__file__).parents[1] / "scenarios"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (a path, or the name of a stock scenario).

    :raises ConfigError: the file cannot be read, is not TOML, or a field is invalid.
    """
    file = Path(path)
    if not file.exists() and (STOCK_DIR / f"{path}.toml").exists():
        file = STOCK_DIR / f"{path}.toml"
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {file}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file.name}: not valid TOML: {exc}") from None
    return parse_scenario(data, file.name)


def stock_scenarios() -> list[str]:
    """Names of the stock scenarios in ``simnet/scenarios/``."""
    return sorted(p.stem for p in STOCK_DIR.glob("*.toml"))


def stock_scenario(name: str) -> Scenario:
    """A stock scenario by name."""
    if name not in stock_scenarios():
        raise ConfigError(f"no stock scenario {name!r} (have: {', '.join(stock_scenarios())})")
    return load_scenario(STOCK_DIR / f"{name}.toml")
