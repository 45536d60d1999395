"""simnet.runner, simnet.report and ``dndm sim``: runs, crashes, the watchdog, reports."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from dndm_p2p.cli.main import main as dndm_main
from protocols.errors import ConfigError
from simnet.cli import main as sim_main
from simnet.metrics import load_events
from simnet.report import compare_runs, write_report
from simnet.runner import run_scenario
from simnet.scenario import Scenario, parse_scenario

pytestmark = pytest.mark.timeout(300)


def small(**extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "small",
        "nodes": 8,
        "duration": "20s",
        "workload": {
            "routes": 2,
            "subscribers": 2,
            "rate": 2,
            "discovery": "gossip",
            "declare_spread": "1s",
            "discovery_window": "8s",
        },
    }
    data.update(extra)
    return parse_scenario(data, "small")


def events_of(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in load_events(run_dir / "events.jsonl") if e["ev"] == kind]


@pytest.fixture(scope="module")
def crashing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run in which one subscriber's node crashes at 8 s and is restarted 2 s later."""
    scenario = small(
        events=[
            {"at": "8s", "kind": "crash", "count": 1, "target": "subscribers", "restart_after": 2}
        ]
    )
    out = tmp_path_factory.mktemp("runs") / "crash"
    result = run_scenario(scenario, out)
    assert result.aborted is None
    return out


def test_a_crashing_node_is_recorded_and_the_run_goes_on(crashing_run: Path) -> None:
    crashes = events_of(crashing_run, "crash")
    assert len(crashes) == 1
    assert "SimulatedCrash" in crashes[0]["error"]
    crashed = crashes[0]["node"]
    downs = [e for e in events_of(crashing_run, "node_down") if e["node"] == crashed]
    assert [d["reason"] for d in downs][:1] == ["crash"]
    ups = [e for e in events_of(crashing_run, "node_up") if e["node"] == crashed]
    assert [u["inc"] for u in ups] == [1, 2], "restarted with its identity"
    assert ups[0]["peer"] == ups[1]["peer"]
    # The rest of the mesh kept delivering after the crash, and the run ended normally.
    after = [e for e in events_of(crashing_run, "deliver") if e["t"] > crashes[0]["t"] + 1]
    assert after
    assert events_of(crashing_run, "run_end")[-1]["aborted"] is None
    summary = json.loads((crashing_run / "summary.json").read_text())
    assert summary["crashes"] == 1
    assert summary["restarts"] == 1
    assert summary["discovery_success"] == 1.0


def test_manifest_and_report_files(crashing_run: Path) -> None:
    manifest = json.loads((crashing_run / "manifest.json").read_text())
    for key in ("versions", "seed", "config_hash", "cpu_s", "wall_s", "virtual_s", "speedup"):
        assert key in manifest
    assert manifest["peak_rss_mb"] > 0
    assert manifest["virtual_s"] >= 20
    assert set(manifest["phases"]) >= {"start->joined", "steady->end"}
    for name in ("summary.md", "summary.csv", "by_class.csv", "bootstrap.csv"):
        assert (crashing_run / name).stat().st_size > 0
    for name in ("latency_cdf.png", "delivery_over_time.png", "load_hist.png"):
        data = (crashing_run / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG"), name
    table = (crashing_run / "summary.md").read_text()
    assert "discovery success" in table
    assert "| 0 |" in table  # the bootstrap server's row


def test_report_and_compare_from_the_command_line(crashing_run: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    assert sim_main(["report", str(crashing_run)], out=out) == 0
    assert "discovery success: 100.00 %" in out.getvalue()
    assert sim_main(["compare", str(crashing_run), str(crashing_run), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "compare.md").read_text()
    assert "| discovery success | 100.00 % | 100.00 % |" in text
    assert (tmp_path / "compare.csv").read_text().startswith("metric,crash,crash,change")
    assert (tmp_path / "compare_cdf.png").read_bytes().startswith(b"\x89PNG")
    assert compare_runs(crashing_run, crashing_run, tmp_path / "again").exists()


def test_report_refuses_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a simulation run"):
        write_report(tmp_path)
    assert sim_main(["report", str(tmp_path)]) == 2


def test_watchdog_stops_a_run_that_takes_too_long(tmp_path: Path) -> None:
    scenario = small(nodes=30, duration="600s", watchdog="2s")
    result = run_scenario(scenario, tmp_path / "run")
    assert result.aborted == "watchdog"
    assert events_of(tmp_path / "run", "watchdog")
    assert events_of(tmp_path / "run", "run_end")[-1]["aborted"] == "watchdog"
    assert result.manifest["wall_s"] < 120
    assert "Aborted: watchdog" in (tmp_path / "run" / "summary.md").read_text()


def test_dndm_sim_run_with_overrides(tmp_path: Path) -> None:
    scenario_file = tmp_path / "tiny.toml"
    scenario_file.write_text(
        'name = "tiny"\nnodes = 20\nduration = "15s"\n'
        '[workload]\nroutes = 1\nsubscribers = 2\ndiscovery = "gossip"\n'
        'declare_spread = "1s"\ndiscovery_window = "5s"\n'
    )
    out = tmp_path / "run"
    args = ["sim", "run", str(scenario_file), "--nodes", "6", "--seed", "4", "--out", str(out)]
    assert dndm_main([*args, "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["nodes"] == 6
    assert manifest["seed"] == 4
    assert len({e["node"] for e in events_of(out, "node_up")}) == 6
    # A second run into the same directory is refused.
    assert dndm_main([*args, "--quiet"]) == 2


def test_dndm_sim_lists_the_stock_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert dndm_main(["sim", "list"]) == 0
    assert "baseline" in capsys.readouterr().out.split()
