"""Scenarios: what a simulation runs, as TOML files validated into frozen dataclasses.

A scenario names the nodes (how many, their classes: NAT behaviour, uplink, connection
limits), the network (latency model, loss), how nodes join (bootstrap servers, waves, rate),
the DNDM workload (routes, publishers, subscribers, patterns, rates, sizes, reliability,
discovery mode) and timed events (kill and restart, crash, churn, partition, heal, bootstrap
failure, latency spike).  Every field is checked; an error names the field, e.g.
``baseline.toml: workload.rate: must be a number > 0, not -1``.

Durations are seconds or strings with a unit (``"25ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``);
bandwidths are bytes per second or strings (``"10Mbps"``, ``"2MB/s"``, ``"inf"``); sizes are
bytes or strings (``"1KB"`` = 1000, ``"1KiB"`` = 1024).  Times of events count from the start
of the workload (when every node has joined).  See ``simnet/scenarios/*.toml`` and
``docs/simnet.md`` for the full format.

* :mod:`simnet.scenario.specs`: the value types (:class:`Scenario` and its ``*Spec`` sections);
* :mod:`simnet.scenario.parse`: validation of parsed TOML (:func:`parse_scenario`);
* :mod:`simnet.scenario.files`: reading a file (:func:`load_scenario`), the stock scenarios.
"""

from simnet.scenario.files import STOCK_DIR, load_scenario, stock_scenario, stock_scenarios
from simnet.scenario.parse import parse_scenario
from simnet.scenario.specs import (
    DISCOVERY_MODES,
    EVENT_KINDS,
    ClassSpec,
    EventSpec,
    JoinSpec,
    LatencySpec,
    NetworkSpec,
    NodeSpec,
    Scenario,
    WorkloadSpec,
)

__all__ = [
    "DISCOVERY_MODES",
    "EVENT_KINDS",
    "STOCK_DIR",
    "ClassSpec",
    "EventSpec",
    "JoinSpec",
    "LatencySpec",
    "NetworkSpec",
    "NodeSpec",
    "Scenario",
    "WorkloadSpec",
    "load_scenario",
    "parse_scenario",
    "stock_scenario",
    "stock_scenarios",
]
