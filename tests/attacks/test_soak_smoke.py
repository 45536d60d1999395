"""The soak benchmark runs end to end: ``--quick`` with tiny counts, well-formed JSON figures.

This checks the benchmark, not the node: its targets are not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = ("ping_flood", "stalled_subscriber", "find_node_flood")
KEYS = {"name", "value", "unit", "baseline", "ratio"}
#: Figures printed for every attack.
PER_ATTACK = (
    "rate_before",
    "rate_during",
    "rate_after",
    "reliable_lost",
    "rss_growth",
    "survived",
    "counters_moved",
    "churn_failed",
    "attacker",
)


@pytest.mark.slow
def test_quick_soak_prints_every_figure() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_soak",
        "--quick",
        "--peers",
        "20",
        "--baseline-seconds",
        "1.5",
        "--attack-seconds",
        "2",
        "--churn-wait",
        "5",
        "--attacks",
        ",".join(ATTACKS),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    for figure in figures:
        assert figure.keys() >= KEYS, figure
        assert isinstance(figure["name"], str)
        assert figure["value"] is None or isinstance(figure["value"], int | float), figure
    names = {figure["name"] for figure in figures}
    expected = {f"soak.{attack}.{what}" for attack in ATTACKS for what in PER_ATTACK}
    expected |= {"soak.churn.peers", "soak.churn.rate", "soak.victim.exits"}
    assert expected <= names, sorted(expected - names)
    by_name = {figure["name"]: figure for figure in figures}
    for attack in ATTACKS:
        during = by_name[f"soak.{attack}.rate_during"]
        assert during["baseline"] == f"soak.{attack}.rate_before"
        assert by_name[f"soak.{attack}.attacker"]["report"]["attack"] == attack
