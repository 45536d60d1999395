"""What a run leaves beside its events: ``manifest.json``, and the run directory itself.

:func:`run_manifest` is the manifest of a finished run: versions (Python, the packages, the
git commit), seed, config hash, the scenario, wall, CPU and virtual seconds per phase,
speed-up over real time, peak RSS.  :func:`default_run_dir` names a new run directory and
:func:`check_out_dir` refuses one that already holds a run.
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from protocols.errors import ConfigError
from simnet.scenario import Scenario

__all__ = [
    "PHASES",
    "Mark",
    "check_out_dir",
    "default_run_dir",
    "run_manifest",
    "write_manifest",
]

#: The phase boundaries a run marks, in order; a phase runs from one to the next.
PHASES: Final = ("start", "joined", "workload", "steady", "end")

#: One phase boundary: virtual, wall and CPU seconds then.
Mark = tuple[float, float, float]


def run_manifest(
    scenario: Scenario,
    marks: dict[str, Mark],
    *,
    wall_s: float,
    cpu_s: float,
    events: int,
    aborted: str | None,
) -> dict[str, Any]:
    """The manifest of a run of ``scenario`` that just ended (its peak RSS is this process's).

    :param marks: the phase boundaries the run reached (see :data:`PHASES`).
    :param wall_s: wall seconds the run took; ``cpu_s``: CPU seconds.
    :param events: how many events it logged; ``aborted``: why it was aborted, if it was.
    """
    virtual_s = marks["end"][0] if "end" in marks else 0.0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest: dict[str, Any] = {
        "scenario": scenario.name,
        "nodes": scenario.nodes,
        "seed": scenario.seed,
        "config_hash": scenario.config_hash(),
        "versions": _versions(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - wall_s)),
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "virtual_s": round(virtual_s, 3),
        "speedup": round(virtual_s / wall_s, 3) if wall_s > 0 else None,
        "speedup_cpu": round(virtual_s / cpu_s, 3) if cpu_s > 0 else None,
        "phases": _phases(marks),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_rss_per_node_mb": round(peak_kb / 1024 / scenario.nodes, 3),
        "events": events,
        "aborted": aborted,
        "scenario_config": scenario.as_dict(),
    }
    return manifest


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as ``out_dir/manifest.json``."""
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def default_run_dir(scenario: Scenario, base: Path | None = None) -> Path:
    """``runs/<scenario>-n<nodes>-s<seed>-<timestamp>`` under ``base`` (default: cwd)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{scenario.name}-n{scenario.nodes}-s{scenario.seed}-{stamp}"
    return (base if base is not None else Path("runs")) / name


def check_out_dir(out_dir: Path) -> None:
    """Refuse to write a run into a directory that already holds one."""
    if (out_dir / "events.jsonl").exists():
        raise ConfigError(f"{out_dir} already holds a run (events.jsonl); choose another --out")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("dndm-p2p", "libp2p", "trio", "protobuf"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    found["git"] = sha or "unknown"
    return found


def _phases(marks: dict[str, Mark]) -> dict[str, dict[str, float]]:
    order = [name for name in PHASES if name in marks]
    found = {}
    for a, b in itertools.pairwise(order):
        virtual = marks[b][0] - marks[a][0]
        wall = marks[b][1] - marks[a][1]
        cpu = marks[b][2] - marks[a][2]
        found[f"{a}->{b}"] = {
            "virtual_s": round(virtual, 3),
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "speedup": round(virtual / wall, 3) if wall > 0 else math.inf,
        }
    return found
