"""simnet.scenario: TOML scenarios are validated and errors name the bad field."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from protocols.errors import ConfigError
from simnet.scenario import (
    load_scenario,
    parse_scenario,
    stock_scenario,
    stock_scenarios,
)

STOCK = {"baseline", "join_storm", "churn", "partition_heal", "nat_mix", "bootstrap_overload"}


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "t", "nodes": 10, "duration": "30s"}
    data.update(extra)
    return data


def test_minimal_scenario_gets_defaults() -> None:
    scenario = parse_scenario(minimal())
    assert scenario.nodes == 10
    assert scenario.duration == 30.0
    assert scenario.security == "plaintext"
    assert scenario.muxer == "mplex"
    assert scenario.node.ping_interval == 10.0
    assert [c.name for c in scenario.classes] == ["public"]
    assert scenario.class_counts() == [9]  # one bootstrap server


def test_units_are_parsed() -> None:
    scenario = parse_scenario(
        minimal(
            network={"latency": {"model": "uniform", "min": "10ms", "max": "0.05s"}},
            classes=[{"name": "slow", "uplink": "8Mbps"}, {"name": "fast", "uplink": "inf"}],
            workload={"size": "2KiB", "rate": 4, "routes": "20%"},
            watchdog="1.5m",
        )
    )
    assert scenario.network.latency.min == pytest.approx(0.010)
    assert scenario.network.latency.max == pytest.approx(0.05)
    assert scenario.classes[0].uplink == pytest.approx(1e6)
    assert math.isinf(scenario.classes[1].uplink)
    assert scenario.workload.size == 2048
    assert scenario.workload.route_count(scenario.nodes) == 2
    assert scenario.watchdog == 90.0


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "t", "duration": "1s"}, "nodes", "required"),
        (minimal(nodes=1), "nodes", ">= 2"),
        (minimal(nodes="many"), "nodes", "integer"),
        (minimal(duration="ten"), "duration", "duration"),
        (minimal(duration="10 parsecs"), "duration", "unknown unit"),
        (minimal(colour="red"), "colour", "unknown field"),
        (minimal(network={"loss": 0.9}), "network.loss", "<= 0.5"),
        (minimal(network={"latency": {"model": "fractal"}}), "network.latency.model", "one of"),
        (
            minimal(network={"latency": {"model": "constant", "min": "1ms"}}),
            "network.latency.min",
            "not used by the 'constant'",
        ),
        (
            minimal(network={"latency": {"model": "regions", "regions": ["a", "b"]}}),
            "network.latency.matrix",
            "2 rows of 2",
        ),
        (minimal(classes=[{"share": 1}]), "classes[0].name", "required"),
        (minimal(classes=[{"name": "x", "nat": "full"}]), "classes[0].nat", "one of"),
        (minimal(classes=[{"name": "x", "uplink": "-3Mbps"}]), "classes[0].uplink", "bandwidth"),
        (
            minimal(classes=[{"name": "x", "min_connections": 50, "max_connections": 10}]),
            "classes[0].min_connections",
            "<= max_connections",
        ),
        (minimal(classes=[{"name": "a"}, {"name": "a"}]), "classes[1].name", "taken"),
        (minimal(join={"mode": "magic"}), "join.mode", "one of"),
        (minimal(join={"bootstraps": 10}), "join.bootstraps", "no other node"),
        (minimal(node={"ping_interval": "40s"}), "node.ping_timeout", "longer than"),
        (minimal(workload={"rate": -1}), "workload.rate", "> 0"),
        (minimal(workload={"reliable": "yes"}), "workload.reliable", "true or false"),
        (minimal(workload={"discovery": "psychic"}), "workload.discovery", "one of"),
        (minimal(workload={"subscribers": 50}), "workload.subscribers", "more than"),
        (
            minimal(workload={"pattern_subscribers": 1, "discovery": "dht"}),
            "workload.pattern_subscribers",
            "gossip",
        ),
        (minimal(workload={"routes": "150%"}), "workload.routes", "percentage of the nodes"),
        (minimal(workload={"namespaces": "0%"}), "workload.namespaces", "percentage of the routes"),
        (minimal(events=[{"at": "1s"}]), "events[0].kind", "required"),
        (minimal(events=[{"at": "1s", "kind": "explode"}]), "events[0].kind", "one of"),
        (minimal(events=[{"kind": "heal"}]), "events[0].at", "required"),
        (minimal(events=[{"at": "1s", "kind": "kill"}]), "events[0].count", "count or fraction"),
        (
            minimal(events=[{"at": "1s", "kind": "heal", "factor": 2}]),
            "events[0].factor",
            "not a field of a 'heal' event",
        ),
        (minimal(events=[{"at": "1s", "kind": "partition"}]), "events[0].fraction", "fraction"),
        (
            minimal(events=[{"at": "1s", "kind": "churn", "count": 1, "every": "1s"}]),
            "events[0].until",
            "required",
        ),
        (minimal(events=[{"at": "99s", "kind": "heal"}]), "events[0].at", "after the end"),
        (
            minimal(events=[{"at": "1s", "kind": "kill", "count": 50}]),
            "events[0].count",
            "more than",
        ),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data, "case.toml")
    message = str(caught.value)
    assert message.startswith(f"case.toml: {field}: "), message
    assert words in message


def test_overrides_are_checked_like_the_file() -> None:
    scenario = parse_scenario(minimal(workload={"subscribers": 3}))
    assert scenario.with_overrides(nodes=500, seed=7).nodes == 500
    with pytest.raises(ConfigError, match=r"workload\.subscribers"):
        scenario.with_overrides(nodes=3)


def test_config_hash_follows_every_field() -> None:
    scenario = parse_scenario(minimal())
    assert scenario.config_hash() == parse_scenario(minimal()).config_hash()
    assert scenario.config_hash() != scenario.with_overrides(seed=2).config_hash()
    assert scenario.config_hash() != scenario.with_overrides(nodes=11).config_hash()


def test_stock_scenarios_load_at_50_nodes() -> None:
    assert set(stock_scenarios()) == STOCK
    for name in STOCK:
        scenario = stock_scenario(name).with_overrides(nodes=50)
        assert scenario.name == name
        assert scenario.duration <= 120, "stock scenarios stay short (they run in CI)"


def test_load_scenario_reports_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("nodes = [1,")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken)
    good = tmp_path / "good.toml"
    good.write_text('name = "good"\nnodes = 4\nduration = "10s"\n')
    assert load_scenario(good).nodes == 4
    assert tomllib.loads(good.read_text())["name"] == "good"
