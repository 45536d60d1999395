"""The event schema of a simulation run (JSON lines) and the summary computed from it.

Every line of ``events.jsonl`` is one JSON object with ``t`` (virtual seconds since the run
started) and ``ev`` (its kind), plus the fields of that kind:

==================  ========================================================================
``ev``              fields
==================  ========================================================================
``run_start``       ``scenario``, ``nodes``, ``seed``
``phase``           ``name`` (``joined``, ``workload``, ``steady``, ``end``)
``node_up``         ``node`` (index), ``cls``, ``boot`` (bootstrap server?), ``inc``
                    (incarnation), ``peer`` (peer id), ``join_s`` (seconds to start)
``node_down``       ``node``, ``reason`` (``kill``, ``crash``, ``end``)
``crash``           ``node``, ``error`` (an exception escaped the node: recorded, node removed)
``subscribe``       ``sub`` (subscription id), ``node``, ``cls``, ``route`` (or pattern)
``link``            ``sub``: its interest linked to a first intent
``unsubscribe``     ``sub``: its node went down
``publish``         ``msg`` (id), ``node``, ``route``, ``exp`` (subscriptions up and matching),
                    ``lk`` (of those, the ones linked to this publisher)
``deliver``         ``msg``, ``sub``, ``lat`` (publish-to-deliver virtual seconds)
``kill``            ``node``, ``restart_after``; ``restart``: ``node``
``partition``       ``sizes`` (nodes per side); ``heal``
``latency_spike``   ``factor``; ``latency_restore``
``bootstrap_failure``  ``nodes``
``sample``          ``up`` (nodes up), ``conns_mean``, ``boot_conns`` (per bootstrap server)
``node_stats``      ``node``, ``cls``, ``boot``, ``up``, ``bytes_out``, ``bytes_in``,
                    ``dials_out``, ``dials_in``, ``dials_failed``, ``conns``, ``peers``, ``rt``
                    (routing-table size), ``dht_lookups``, ``dht_provides``, ``dht_lookup_s``
                    (mean seconds), ``kad_out`` (DHT streams opened), ``kad_in`` (DHT streams
                    served), ``errors``
``watchdog``        ``wall``: the wall-time limit stopped the run
``run_end``         ``aborted`` (reason or null)
==================  ========================================================================

:func:`summarize` turns a run's events into the summary (discovery latency and success per
subscription, publish-to-deliver latency percentiles, delivery ratios, duplicates, bytes and
connections per node, DHT use, routing-table sizes, bootstrap load).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import trio

__all__ = ["EventLog", "RunData", "load_events", "percentile", "summarize"]


class EventLog:
    """Writes events as JSON lines to ``path`` (times relative to the run's start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._origin = 0.0
        self.count = 0

    def __enter__(self) -> EventLog:
        self._file = self.path.open("w", buffering=1 << 16)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def start(self) -> None:
        """Times count from now (call inside the trio run)."""
        self._origin = trio.current_time()

    def now(self) -> float:
        """Virtual seconds since :meth:`start`."""
        return trio.current_time() - self._origin

    def emit(self, ev: str, **fields: Any) -> None:
        """Write one event, stamped with the current virtual time."""
        if self._file is None:
            raise RuntimeError("the event log is not open")
        record = {"t": round(self.now(), 6), "ev": ev, **fields}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1


def load_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of an ``events.jsonl`` file, in order."""
    with path.open() as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class _Sub:
    node: int
    cls: str
    route: str
    start: float
    end: float | None = None
    linked: float | None = None
    first: float | None = None


@dataclass
class RunData:
    """What the plots and tables need from one run's events."""

    #: Seconds from subscribing to the first message, per successful subscription.
    discovery: list[float] = field(default_factory=list)
    #: Publish-to-deliver seconds of every delivery.
    delivery: list[float] = field(default_factory=list)
    #: (bin start, expected pairs, delivered pairs) of publishes by virtual time.
    ratio_bins: list[tuple[float, int, int]] = field(default_factory=list)
    #: (virtual time, label) of timed events and phases.
    marks: list[tuple[float, str]] = field(default_factory=list)
    #: The ``node_stats`` events.
    nodes: list[dict[str, Any]] = field(default_factory=list)
    #: The ``sample`` events.
    samples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


_MARKED = {
    "kill",
    "restart",
    "crash",
    "partition",
    "heal",
    "latency_spike",
    "latency_restore",
    "bootstrap_failure",
    "watchdog",
}


def _stats(values: Sequence[float], prefix: str) -> dict[str, float | None]:
    found: dict[str, float | None] = {f"{prefix}_count": float(len(values))}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        found[f"{prefix}_{name}"] = percentile(values, q)
    found[f"{prefix}_max"] = max(values) if values else None
    return found


def summarize(
    events: Iterator[dict[str, Any]], *, discovery_window: float, bin_seconds: float = 1.0
) -> RunData:
    """Compute the summary of a run from its events (see the module docstring).

    A subscription succeeds when a first message reaches it; one that ended (its node went
    down) or was still young at the end without a message after less than
    ``discovery_window`` seconds is left out (censored) rather than counted as failed.
    Delivery ratios: ``all`` over every (publish, subscription up and matching) pair,
    ``steady`` over pairs whose subscription was older than ``discovery_window``, ``linked``
    over pairs already linked to the publisher at publish time.
    """
    data = RunData()
    subs: dict[str, _Sub] = {}
    publishes: dict[int, tuple[float, list[str], list[str]]] = {}
    delivered: Counter[tuple[int, str]] = Counter()
    end = 0.0
    phases: dict[str, float] = {}
    crashes = kills = 0
    aborted: str | None = None
    ups: dict[int, int] = defaultdict(int)
    join_times: list[float] = []
    for event in events:
        t = float(event["t"])
        end = max(end, t)
        kind = event["ev"]
        if kind == "deliver":
            delivered[(event["msg"], event["sub"])] += 1
            data.delivery.append(event["lat"])
            sub = subs.get(event["sub"])
            if sub is not None and sub.first is None:
                sub.first = t
        elif kind == "publish":
            publishes[event["msg"]] = (t, event["exp"], event["lk"])
        elif kind == "subscribe":
            subs[event["sub"]] = _Sub(event["node"], event["cls"], event["route"], t)
        elif kind == "link":
            sub = subs.get(event["sub"])
            if sub is not None and sub.linked is None:
                sub.linked = t
        elif kind == "unsubscribe":
            sub = subs.get(event["sub"])
            if sub is not None:
                sub.end = t
        elif kind == "node_up":
            ups[event["node"]] += 1
            if event.get("join_s") is not None and ups[event["node"]] == 1:
                join_times.append(event["join_s"])
        elif kind == "node_stats":
            data.nodes.append(event)
        elif kind == "sample":
            data.samples.append(event)
        elif kind == "phase":
            phases[event["name"]] = t
            data.marks.append((t, event["name"]))
        elif kind == "run_end":
            aborted = event.get("aborted")
        if kind in _MARKED:
            data.marks.append((t, kind))
            crashes += kind == "crash"
            kills += kind == "kill"
    summary: dict[str, Any] = {
        "virtual_s": end,
        "aborted": aborted,
        "crashes": crashes,
        "kills": kills,
        "restarts": sum(n - 1 for n in ups.values()),
        "nodes_started": len(ups),
    }
    summary.update(_stats(join_times, "join_s"))
    # -- discovery --------------------------------------------------------------------------
    eligible = succeeded = 0
    links: list[float] = []
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sub in subs.values():
        if sub.linked is not None:
            links.append(sub.linked - sub.start)
        if sub.first is not None:
            data.discovery.append(sub.first - sub.start)
        lived = (sub.end if sub.end is not None else end) - sub.start
        if sub.first is None and lived < discovery_window:
            continue
        eligible += 1
        succeeded += sub.first is not None
        per_class[sub.cls][0] += 1
        per_class[sub.cls][1] += sub.first is not None
    summary["subscriptions"] = len(subs)
    summary["discovery_eligible"] = eligible
    summary["discovery_succeeded"] = succeeded
    summary["discovery_success"] = succeeded / eligible if eligible else None
    summary.update(_stats(data.discovery, "discovery_s"))
    summary.update({k: v for k, v in _stats(links, "link_s").items() if k != "link_s_count"})
    summary["discovery_by_class"] = {
        cls: {"eligible": n, "succeeded": ok, "success": ok / n if n else None}
        for cls, (n, ok) in sorted(per_class.items())
    }
    # -- delivery ---------------------------------------------------------------------------
    totals = {"all": [0, 0], "steady": [0, 0], "linked": [0, 0]}
    bins: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for msg, (t, expected, linked) in publishes.items():
        linked_set = set(linked)
        for sub_id in expected:
            got = delivered.get((msg, sub_id), 0) > 0
            totals["all"][0] += 1
            totals["all"][1] += got
            sub = subs.get(sub_id)
            if sub is not None and t - sub.start >= discovery_window:
                totals["steady"][0] += 1
                totals["steady"][1] += got
            if sub_id in linked_set:
                totals["linked"][0] += 1
                totals["linked"][1] += got
            slot = bins[int(t // bin_seconds)]
            slot[0] += 1
            slot[1] += got
    for name, (n, ok) in totals.items():
        summary[f"delivery_pairs_{name}"] = n
        summary[f"delivery_ratio_{name}"] = ok / n if n else None
    summary["publishes"] = len(publishes)
    summary["deliveries"] = sum(delivered.values())
    summary["duplicates"] = sum(n - 1 for n in delivered.values() if n > 1)
    summary.update(_stats(data.delivery, "delivery_s"))
    data.ratio_bins = [(k * bin_seconds, n, ok) for k, (n, ok) in sorted(bins.items())]
    # -- nodes, load, DHT -------------------------------------------------------------------
    summary.update(_node_summary(data.nodes, data.samples))
    summary["phases"] = phases
    data.summary = summary
    return data


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _node_summary(nodes: list[dict[str, Any]], samples: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    regular = [n for n in nodes if not n["boot"]]
    boots = [n for n in nodes if n["boot"]]
    up = [n for n in regular if n["up"]]
    found["nodes_up_at_end"] = sum(1 for n in nodes if n["up"])
    for key in ("bytes_out", "bytes_in", "conns"):
        values = [float(n[key]) for n in regular]
        found[f"{key}_mean"] = _mean(values)
        found[f"{key}_p95"] = percentile(values, 0.95)
        found[f"{key}_max"] = max(values) if values else None
    rts = [float(n["rt"]) for n in up if n["rt"] is not None]
    found["rt_mean"] = _mean(rts)
    found["rt_min"] = min(rts) if rts else None
    found["rt_p5"] = percentile(rts, 0.05)
    found["rt_empty"] = sum(1 for size in rts if size == 0)
    lookups = sum(n["dht_lookups"] for n in nodes)
    provides = sum(n["dht_provides"] for n in nodes)
    kad_out = sum(n["kad_out"] for n in nodes)
    found["dht_lookups"] = lookups
    found["dht_provides"] = provides
    found["dht_streams_per_op"] = kad_out / (lookups + provides) if lookups + provides else None
    lookup_means = [n["dht_lookup_s"] for n in nodes if n["dht_lookup_s"] is not None]
    found["dht_lookup_s_mean"] = _mean(lookup_means)
    found["dials_failed"] = sum(n["dials_failed"] for n in nodes)
    found["node_errors"] = sum(n["errors"] for n in nodes)
    peak: list[int] = []
    for sample in samples:
        for i, conns in enumerate(sample.get("boot_conns", [])):
            if i >= len(peak):
                peak.append(0)
            peak[i] = max(peak[i], conns)
    found["bootstrap"] = [
        {
            "node": n["node"],
            "peak_conns": peak[i] if i < len(peak) else None,
            "conns": n["conns"],
            "bytes_out": n["bytes_out"],
            "bytes_in": n["bytes_in"],
            "dials_in": n["dials_in"],
            "kad_in": n["kad_in"],
        }
        for i, n in enumerate(sorted(boots, key=lambda n: n["node"]))
    ]
    return found
