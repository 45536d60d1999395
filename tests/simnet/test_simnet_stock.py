"""Every stock scenario runs at 50 real DNDM nodes and shows what it is about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simnet.metrics import load_events
from simnet.runner import run_scenario
from simnet.scenario import stock_scenario

NODES = 50


def run_stock(name: str, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a stock scenario at :data:`NODES` nodes; its summary and events."""
    scenario = stock_scenario(name).with_overrides(nodes=NODES)
    result = run_scenario(scenario, tmp_path / name)
    assert result.aborted is None
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    events = list(load_events(tmp_path / name / "events.jsonl"))
    assert summary["nodes_started"] == NODES
    assert summary["subscriptions"] > 0
    assert summary["publishes"] > 0
    for figure in ("latency_cdf.png", "delivery_over_time.png", "load_hist.png"):
        assert (tmp_path / name / "figures" / figure).stat().st_size > 1000
    return summary, events


def kinds(events: list[dict[str, Any]]) -> set[str]:
    return {e["ev"] for e in events}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_baseline(tmp_path: Path) -> None:
    summary, _ = run_stock("baseline", tmp_path)
    assert summary["discovery_success"] >= 0.99
    assert summary["delivery_ratio_steady"] >= 0.99
    assert summary["duplicates"] == 0
    assert summary["delivery_s_p95"] < 0.2  # tens of ms of latency, two hops at most


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_churn(tmp_path: Path) -> None:
    summary, events = run_stock("churn", tmp_path)
    assert summary["kills"] >= 5
    assert summary["crashes"] == 1
    assert summary["restarts"] >= summary["kills"]
    assert {"kill", "restart", "crash"} <= kinds(events)
    assert summary["delivery_ratio_linked"] >= 0.9


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_partition_heal(tmp_path: Path) -> None:
    summary, events = run_stock("partition_heal", tmp_path)
    assert {"partition", "heal", "latency_spike", "latency_restore"} <= kinds(events)
    # Messages written across the partition are held and arrive after the heal (TCP keeps
    # retransmitting), so some deliveries take about as long as the partition lasted.
    assert summary["delivery_s_max"] > 5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nat_mix(tmp_path: Path) -> None:
    summary, _ = run_stock("nat_mix", tmp_path)
    assert set(summary["discovery_by_class"]) <= {"public", "cone", "symmetric"}
    assert summary["discovery_by_class"]["public"]["success"] >= 0.9


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bootstrap_overload(tmp_path: Path) -> None:
    summary, events = run_stock("bootstrap_overload", tmp_path)
    assert "bootstrap_failure" in kinds(events)
    (server,) = summary["bootstrap"]
    assert server["peak_conns"] <= 40  # its connection limit
    assert summary["kills"] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_join_storm(tmp_path: Path) -> None:
    summary, _ = run_stock("join_storm", tmp_path)
    assert summary["rt_empty"] == 0
    assert summary["dht_lookups"] > 0
    assert summary["discovery_success"] >= 0.9
