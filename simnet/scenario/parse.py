"""Validation of a scenario given as parsed TOML: :func:`parse_scenario`.

Each TOML table is read through a :class:`_Table`, which names the path of every field it
reads and rejects the fields it did not read, so every error names its field, e.g.
``baseline.toml: workload.rate: must be a number > 0, not -1``.  Each section has its parser
(``_network``, ``_join``, ``_workload``, ``_events``, ...), built from small field parsers
(``_duration``, ``_bandwidth``, ``_size``, ``_number``, ``_integer``, ``_choice``, ...).

Durations are seconds or strings with a unit (``"25ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``);
bandwidths are bytes per second or strings (``"10Mbps"``, ``"2MB/s"``, ``"inf"``); sizes are
bytes or strings (``"1KB"`` = 1000, ``"1KiB"`` = 1024).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from protocols.errors import ConfigError
from protocols.validation import bound_problem
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
    check_sizes,
)

__all__ = ["parse_scenario"]

_TARGETS: Final = ("any", "bootstrap", "publishers", "subscribers")
_NATS: Final = ("public", "cone", "symmetric")
_LATENCY_MODELS: Final = ("constant", "uniform", "regions")

T = TypeVar("T")

_UNITS_S: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_UNITS_BW: Final = {
    "bps": 1 / 8,
    "kbps": 1e3 / 8,
    "mbps": 1e6 / 8,
    "gbps": 1e9 / 8,
    "b/s": 1.0,
    "kb/s": 1e3,
    "mb/s": 1e6,
    "gb/s": 1e9,
}
_UNITS_SIZE: Final = {"b": 1, "kb": 1000, "mb": 10**6, "kib": 1024, "mib": 1 << 20}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z/]*)\s*$")


class _Table:
    """One TOML table being read: every read names its path; unknown keys are errors."""

    def __init__(self, data: object, path: str, source: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            raise self.error(path or "scenario", f"must be a table, not {_kind(data)}")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {name}: {message}")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, parse: Callable[[Any, str], T], default: T) -> T:
        self.seen.add(key)
        if key not in self.data:
            return default
        try:
            return parse(self.data[key], self.name(key))
        except _Bad as bad:
            raise self.error(bad.name, bad.message) from None

    def require(self, key: str, parse: Callable[[Any, str], T]) -> T:
        if key not in self.data:
            raise self.error(self.name(key), "is required")
        found: T | None = self.get(key, parse, None)
        assert found is not None
        return found

    def sub(self, key: str) -> _Table:
        self.seen.add(key)
        return _Table(self.data.get(key, {}), self.name(key), self.source)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            where = self.path or "the top level"
            raise self.error(self.name(unknown[0]), f"unknown field in {where}")


class _Bad(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message


def _kind(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _quantity(units: Mapping[str, float], what: str) -> Callable[[Any, str], float]:
    def parse(value: Any, name: str) -> float:
        if isinstance(value, bool):
            raise _Bad(name, f"must be {what}, not a boolean")
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and value.strip().lower() in ("inf", "infinite", "unlimited"):
            number = math.inf
        elif isinstance(value, str) and (match := _QUANTITY.match(value)):
            unit = match.group(2).lower()
            if unit and unit not in units:
                raise _Bad(name, f"unknown unit {match.group(2)!r} (use one of {sorted(units)})")
            number = float(match.group(1)) * (units[unit] if unit else 1.0)
        else:
            raise _Bad(name, f"must be {what}, not {value!r}")
        if math.isnan(number) or number < 0:
            raise _Bad(name, f"must be {what} >= 0, not {value!r}")
        return number

    return parse


_duration = _quantity(_UNITS_S, "a duration (seconds or e.g. '25ms')")
_bandwidth = _quantity(_UNITS_BW, "a bandwidth (bytes/s or e.g. '10Mbps')")
_size_any = _quantity(_UNITS_SIZE, "a size (bytes or e.g. '1KB')")


def _size(value: Any, name: str) -> int:
    number = _size_any(value, name)
    if not math.isfinite(number):
        raise _Bad(name, "must be a finite size")
    return int(number)


def _positive_duration(value: Any, name: str) -> float:
    number = _duration(value, name)
    if not 0 < number < math.inf:
        raise _Bad(name, f"must be a duration > 0, not {value!r}")
    return number


def _number(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[..., float]:
    def parse(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(name, f"must be a number, not {_kind(value)}")
        ok = (value > low if low_open else value >= low) and value <= high
        if not ok or math.isnan(value):
            bound = f"> {low}" if low_open else f">= {low}"
            bound += f" and <= {high}" if high != math.inf else ""
            raise _Bad(name, f"must be a number {bound}, not {value!r}")
        return float(value)

    return parse


def _integer(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(name, f"must be an integer, not {_kind(value)}")
        problem = bound_problem(value, "an integer", integer=True, at_least=low, at_most=high)
        if problem is not None:
            raise _Bad(name, problem)
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def parse(value: Any, name: str) -> str:
        if value not in options:
            raise _Bad(name, f"must be one of {', '.join(options)}, not {value!r}")
        return str(value)

    return parse


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Bad(name, f"must be a string, not {_kind(value)}")
    return value


def _name(value: Any, name: str) -> str:
    text = _text(value, name)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise _Bad(name, f"must be 1-64 letters, digits, '_', '.' or '-', not {text!r}")
    return text


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(name, f"must be true or false, not {_kind(value)}")
    return value


def _array(item: Callable[[Any, str], T]) -> Callable[[Any, str], tuple[T, ...]]:
    def parse(value: Any, name: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise _Bad(name, f"must be an array, not {_kind(value)}")
        return tuple(item(v, f"{name}[{i}]") for i, v in enumerate(value))

    return parse


def parse_scenario(data: Mapping[str, Any], source: str = "scenario") -> Scenario:
    """Validate a scenario given as parsed TOML (``source`` names it in errors).

    :raises ConfigError: a field is missing, unknown or invalid; the message names it.
    """
    top = _Table(dict(data), "", source)
    name = top.get("name", _name, "scenario")
    nodes = top.require("nodes", _integer(2, 100_000))
    duration = top.require("duration", _positive_duration)
    scenario = Scenario(
        name=name,
        nodes=nodes,
        duration=duration,
        seed=top.get("seed", _integer(0), 1),
        description=top.get("description", _text, ""),
        watchdog=top.get("watchdog", _positive_duration, 3600.0),
        sample_interval=top.get("sample_interval", _positive_duration, 1.0),
        classes=_classes(top),
        network=_network(top.sub("network")),
        join=_join(top.sub("join")),
        node=_node(top.sub("node")),
        workload=_workload(top.sub("workload")),
        events=_events(top),
        **_transport(top.sub("transport")),
    )
    top.finish()
    check_sizes(scenario, source)
    return scenario


def _transport(table: _Table) -> dict[str, str]:
    found = {
        "security": table.get("security", _choice(("plaintext", "noise")), "plaintext"),
        "muxer": table.get("muxer", _choice(("mplex", "yamux")), "mplex"),
    }
    table.finish()
    return found


def _classes(top: _Table) -> tuple[ClassSpec, ...]:
    raw = top.get("classes", lambda v, n: v, None)
    if raw is None:
        return (ClassSpec("public"),)
    if not isinstance(raw, list) or not raw:
        raise top.error("classes", "must be a non-empty array of tables ([[classes]])")
    found: list[ClassSpec] = []
    for i, item in enumerate(raw):
        table = _Table(item, f"classes[{i}]", top.source)
        spec = ClassSpec(
            name=table.require("name", _name),
            share=table.get("share", _number(0, low_open=True), 1.0),
            nat=table.get("nat", _choice(_NATS), "public"),
            uplink=table.get("uplink", _bandwidth, math.inf),
            max_connections=table.get("max_connections", _integer(2), 160),
            min_connections=table.get("min_connections", _integer(0), 8),
            low_watermark=table.get("low_watermark", _integer(0), 32),
            high_watermark=table.get("high_watermark", _integer(0), 96),
        )
        table.finish()
        if spec.uplink == 0:
            raise table.error(table.name("uplink"), "must be > 0")
        if not spec.min_connections <= spec.max_connections:
            raise table.error(table.name("min_connections"), "must be <= max_connections")
        if not spec.low_watermark <= spec.high_watermark <= spec.max_connections:
            raise table.error(
                table.name("high_watermark"),
                "need low_watermark <= high_watermark <= max_connections",
            )
        if spec.name in {c.name for c in found} or spec.name == "bootstrap":
            raise table.error(table.name("name"), f"{spec.name!r} is taken")
        found.append(spec)
    return tuple(found)


def _network(table: _Table) -> NetworkSpec:
    latency_table = table.sub("latency")
    spec = NetworkSpec(
        latency=_latency(latency_table),
        loss=table.get("loss", _number(0, 0.5), 0.0),
        dial_fail_delay=table.get("dial_fail_delay", _duration, 5.0),
    )
    table.finish()
    return spec


def _latency(table: _Table) -> LatencySpec:
    model = table.get("model", _choice(_LATENCY_MODELS), "constant")
    spec = LatencySpec(
        model=model,
        value=table.get("value", _duration, 0.025),
        min=table.get("min", _duration, 0.0125),
        max=table.get("max", _duration, 0.0375),
        regions=table.get("regions", _array(_name), ()),
        weights=table.get("weights", _array(_number(0, low_open=True)), ()),
        matrix=table.get("matrix", _array(_array(_duration)), ()),
        jitter=table.get("jitter", _number(0, 1), 0.0),
    )
    table.finish()
    used = {
        "constant": {"model", "value"},
        "uniform": {"model", "min", "max"},
        "regions": {"model", "regions", "weights", "matrix", "jitter"},
    }[model]
    extra = sorted(set(table.data) - used)
    if extra:
        raise table.error(table.name(extra[0]), f"is not used by the {model!r} latency model")
    if model == "uniform" and spec.min > spec.max:
        raise table.error(table.name("min"), "must be <= max")
    if model == "regions":
        count = len(spec.regions)
        if count == 0:
            raise table.error(table.name("regions"), "must name at least one region")
        if spec.weights and len(spec.weights) != count:
            raise table.error(table.name("weights"), f"must have {count} entries, one per region")
        if len(spec.matrix) != count or any(len(row) != count for row in spec.matrix):
            raise table.error(table.name("matrix"), f"must be {count} rows of {count} latencies")
    return spec


def _join(table: _Table) -> JoinSpec:
    spec = JoinSpec(
        bootstraps=table.get("bootstraps", _integer(1, 1000), 1),
        mode=table.get("mode", _choice(("fixed", "random")), "fixed"),
        peers=table.get("peers", _integer(1, 100), 1),
        concurrency=table.get("concurrency", _integer(1), 50),
        rate=table.get("rate", _number(0), 0.0),
        bootstrap_max_connections=table.get("bootstrap_max_connections", _integer(2), 1000),
    )
    table.finish()
    return spec


def _node(table: _Table) -> NodeSpec:
    spec = NodeSpec(
        ping_interval=table.get("ping_interval", _positive_duration, 10.0),
        ping_timeout=table.get("ping_timeout", _positive_duration, 30.0),
        handshake_timeout=table.get("handshake_timeout", _positive_duration, 10.0),
        compression=table.get("compression", _boolean, True),
        namespace_depth=table.get("namespace_depth", _integer(1, 8), 1),
    )
    table.finish()
    if spec.ping_timeout <= spec.ping_interval:
        raise table.error(table.name("ping_timeout"), "must be longer than ping_interval")
    return spec


def _count_or_percent(of: str, low: int) -> Callable[[Any, str], tuple[int, float]]:
    def parse(value: Any, name: str) -> tuple[int, float]:
        if isinstance(value, str) and value.endswith("%"):
            try:
                percent = float(value[:-1])
            except ValueError:
                percent = -1.0
            if not 0 < percent <= 100:
                raise _Bad(name, f"must be a count or a percentage of the {of}, not {value!r}")
            return 0, percent
        return _integer(low)(value, name), 0.0

    return parse


def _workload(table: _Table) -> WorkloadSpec:
    routes, routes_percent = table.get("routes", _count_or_percent("nodes", 0), (10, 0.0))
    namespaces, namespaces_percent = table.get(
        "namespaces", _count_or_percent("routes", 1), (2, 0.0)
    )
    spec = WorkloadSpec(
        routes=routes,
        routes_percent=routes_percent,
        namespaces=namespaces,
        namespaces_percent=namespaces_percent,
        publishers=table.get("publishers", _integer(0), 1),
        subscribers=table.get("subscribers", _integer(0), 3),
        pattern_subscribers=table.get("pattern_subscribers", _integer(0), 0),
        rate=table.get("rate", _number(0, low_open=True), 1.0),
        size=table.get("size", _size, 256),
        reliable=table.get("reliable", _boolean, False),
        discovery=table.get("discovery", _choice(DISCOVERY_MODES), "both"),
        start=table.get("start", _duration, 0.0),
        declare_spread=table.get("declare_spread", _duration, 5.0),
        drain=table.get("drain", _duration, 3.0),
        discovery_window=table.get("discovery_window", _positive_duration, 20.0),
    )
    table.finish()
    if spec.size > 1 << 20:
        raise table.error(table.name("size"), "must be at most 1 MiB")
    if spec.pattern_subscribers and spec.discovery == "dht":
        raise table.error(
            table.name("pattern_subscribers"),
            "patterns are found through gossip only: set discovery to 'gossip' or 'both'",
        )
    return spec


def _events(top: _Table) -> tuple[EventSpec, ...]:
    raw: Any = top.get("events", lambda v, n: v, [])
    if not isinstance(raw, list):
        raise top.error("events", "must be an array of tables ([[events]])")
    found = []
    for i, item in enumerate(raw):
        table = _Table(item, f"events[{i}]", top.source)
        kind = table.require("kind", _choice(tuple(EVENT_KINDS)))
        allowed = EVENT_KINDS[kind] | {"at", "kind"}
        extra = sorted(set(table.data) - allowed)
        if extra:
            raise table.error(table.name(extra[0]), f"is not a field of a {kind!r} event")
        spec = EventSpec(
            at=table.require("at", _duration),
            kind=kind,
            count=table.get("count", _integer(1), None),
            fraction=table.get("fraction", _number(0, 1, low_open=True), None),
            target=table.get("target", _choice(_TARGETS), "any"),
            restart_after=table.get("restart_after", _positive_duration, None),
            every=table.get("every", _positive_duration, None),
            until=table.get("until", _duration, None),
            downtime=table.get("downtime", _positive_duration, None),
            factor=table.get("factor", _number(0, low_open=True), None),
            duration=table.get("duration", _positive_duration, None),
        )
        table.finish()
        needs_amount = kind in ("kill", "crash", "churn")
        if needs_amount and (spec.count is None) == (spec.fraction is None):
            raise table.error(table.name("count"), f"a {kind!r} event needs count or fraction")
        if kind == "partition" and spec.fraction is None:
            raise table.error(table.name("fraction"), "a partition needs the fraction cut off")
        if kind == "latency_spike" and spec.factor is None:
            raise table.error(table.name("factor"), "a latency spike needs a factor")
        if kind == "churn":
            for key in ("every", "until", "downtime"):
                if getattr(spec, key) is None:
                    raise table.error(table.name(key), "is required for a churn event")
            if spec.until is not None and spec.until < spec.at:
                raise table.error(table.name("until"), "must not be before at")
        found.append(spec)
    return tuple(sorted(found, key=lambda e: e.at))
