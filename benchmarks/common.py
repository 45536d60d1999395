"""Helpers shared by the benchmarks: figures as JSON lines, timing, repeats and test messages.

Every benchmark prints one JSON object per line on stdout, one per figure, with the keys
``name``, ``value``, ``unit``, ``baseline``, ``ratio`` and (optionally) ``note``; a figure that
could not be measured has ``value`` null and a ``skipped`` reason.  Human-readable summaries go
to stderr so stdout stays machine-readable.

Timing: a benchmark body is a function that does the work and returns the elapsed seconds of
its timed region only (set-up such as building messages and declaring routes stays outside).
:func:`measure` runs it several times and keeps the best (or median) rate.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from benchmarks.proto.bench_pb2 import Tick

__all__ = [
    "DEFAULT_REPEATS",
    "BenchmarkFailure",
    "Figure",
    "Measurement",
    "Stopwatch",
    "check",
    "emit",
    "emit_skipped",
    "interleaved",
    "make_tick",
    "make_ticks",
    "measure",
    "measure_trio",
    "ratio",
    "scaled",
    "summary",
]

#: How many times each timed run is repeated by default.
DEFAULT_REPEATS = 3

Pick = Literal["best", "median"]


class BenchmarkFailure(RuntimeError):
    """A benchmark run produced a wrong result (lost, duplicated or reordered messages)."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`BenchmarkFailure` with ``message`` unless ``condition`` holds.

    Used instead of ``assert`` so the checks also run under ``python -O``.
    """
    if not condition:
        raise BenchmarkFailure(message)


# -- messages ---------------------------------------------------------------------------------


def make_tick(seq: int, size: int = 64, sent_ns: int | None = None) -> Tick:
    """A :class:`Tick` whose serialized size (``ByteSize()``) is exactly ``size`` bytes.

    The payload is zero bytes, sized to make up the difference after ``seq`` and ``sent_ns``
    (``sent_ns`` defaults to ``time.perf_counter_ns()`` now).  Raises ``ValueError`` when
    ``size`` is too small to hold the two integers.
    """
    if sent_ns is None:
        sent_ns = time.perf_counter_ns()
    msg = Tick(seq=seq, sent_ns=sent_ns)
    base = msg.ByteSize()
    # payload adds 1 (tag) + varint(len) + len bytes; try lengths until the total matches.
    for length in range(max(size - base - 1, 0), -1, -1):
        msg.payload = bytes(length)
        if msg.ByteSize() == size:
            return msg
    raise ValueError(f"cannot build a {size}-byte Tick with seq={seq} and sent_ns={sent_ns}")


def make_ticks(count: int, size: int = 64, first_seq: int = 1) -> list[Tick]:
    """``count`` distinct ``size``-byte :class:`Tick` messages, seq from ``first_seq`` on."""
    now = time.perf_counter_ns()
    return [make_tick(first_seq + i, size, now) for i in range(count)]


# -- timing -----------------------------------------------------------------------------------


class Stopwatch:
    """Measures one timed region with ``time.perf_counter``: ``start()`` … ``stop()``."""

    __slots__ = ("_start", "elapsed")

    def __init__(self) -> None:
        self._start = 0.0
        self.elapsed = 0.0

    def start(self) -> None:
        """Start (or restart) the region."""
        self._start = time.perf_counter()

    def stop(self) -> float:
        """End the region and return its length in seconds."""
        self.elapsed = time.perf_counter() - self._start
        return self.elapsed

    @contextmanager
    def timing(self) -> Iterator[Stopwatch]:
        """Context manager form: the ``with`` body is the timed region."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


@dataclass(frozen=True, slots=True)
class Measurement:
    """The result of repeated runs: the chosen rate and every run's rate, in units per second."""

    value: float
    rates: tuple[float, ...]
    pick: Pick
    count: int

    def describe(self) -> str:
        """A short text for a JSON ``note``: how the value was chosen and the spread."""
        spread = ", ".join(f"{r:,.0f}" for r in self.rates)
        return f"{self.pick} of {len(self.rates)} runs of {self.count:,} (runs: {spread})"


def _pick(rates: list[float], pick: Pick) -> float:
    return max(rates) if pick == "best" else statistics.median(rates)


def measure(
    run: Callable[[], float],
    count: int,
    *,
    repeats: int = DEFAULT_REPEATS,
    pick: Pick = "best",
) -> Measurement:
    """Call ``run`` ``repeats`` times; each call returns the seconds its timed region took.

    The rate of one run is ``count / seconds``; the result keeps the best (highest) or the
    median rate.  A full garbage collection runs before each repeat, outside the timed region,
    so one run's garbage is not collected inside the next.
    """
    rates: list[float] = []
    for _ in range(repeats):
        gc.collect()
        seconds = run()
        check(seconds > 0, "a timed region took no time")
        rates.append(count / seconds)
    return Measurement(_pick(rates, pick), tuple(rates), pick, count)


def measure_trio(
    run: Callable[[], Awaitable[float]],
    count: int,
    *,
    repeats: int = DEFAULT_REPEATS,
    pick: Pick = "best",
) -> Measurement:
    """Like :func:`measure` for an async body: every repeat is a fresh ``trio.run(run)``."""
    return measure(lambda: trio.run(run), count, repeats=repeats, pick=pick)


def scaled(m: Measurement, factor: float) -> Measurement:
    """``m`` with every rate multiplied by ``factor`` (e.g. messages/s into deliveries/s)."""
    return Measurement(m.value * factor, tuple(r * factor for r in m.rates), m.pick, m.count)


# -- output -----------------------------------------------------------------------------------


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or ``None`` when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


@dataclass(slots=True)
class Figure:
    """One printed figure; ``extra`` keys (e.g. ``skipped``) are added to the JSON object."""

    name: str
    value: float | None
    unit: str = "msg/s"
    baseline: str | None = None
    ratio: float | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The figure as one compact JSON object (``note`` only when set)."""
        obj: dict[str, Any] = {
            "name": self.name,
            "value": None if self.value is None else round(self.value, 1),
            "unit": self.unit,
            "baseline": self.baseline,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
        }
        if self.note:
            obj["note"] = self.note
        obj.update(self.extra)
        return json.dumps(obj)


def emit(
    name: str,
    value: float | None,
    *,
    unit: str = "msg/s",
    baseline: str | None = None,
    baseline_value: float | None = None,
    note: str | None = None,
    **extra: Any,
) -> Figure:
    """Print one figure as a JSON line on stdout (flushed) and return it.

    ``baseline`` names the figure this one is compared to; ``ratio`` is computed as
    ``value / baseline_value`` (``None`` when either is missing).  A baseline figure itself
    passes neither.
    """
    figure = Figure(name, value, unit, baseline, ratio(value, baseline_value), note, dict(extra))
    print(figure.to_json(), flush=True)
    return figure


def emit_skipped(name: str, reason: str, *, unit: str = "msg/s") -> Figure:
    """Print a figure that could not be measured: ``value`` null and a ``skipped`` reason."""
    return emit(name, None, unit=unit, note=f"skipped: {reason}", skipped=reason)


def summary(text: str) -> None:
    """Print a human-readable line on stderr (stdout carries only JSON lines)."""
    print(text, file=sys.stderr, flush=True)


def interleaved(
    cases: dict[str, tuple[Callable[[], float], int]],
    *,
    repeats: int = DEFAULT_REPEATS,
    pick: Pick = "best",
    progress: bool = True,
) -> dict[str, Measurement]:
    """Measure several cases in rounds: round ``i`` runs every case once, in order.

    ``cases`` maps a name to ``(run, count)`` as for :func:`measure`.  Interleaving the repeats
    spreads slow phases of a busy machine over all cases instead of penalizing whichever case
    happened to run then, so ratios between cases are fairer than with back-to-back repeats.
    """
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(repeats):
        for name, (run, count) in cases.items():
            gc.collect()
            seconds = run()
            check(seconds > 0, f"{name}: a timed region took no time")
            rates[name].append(count / seconds)
            if progress:
                summary(f"  round {round_no + 1}/{repeats} {name}: {count / seconds:,.0f} /s")
    return {
        name: Measurement(_pick(values, pick), tuple(values), pick, cases[name][1])
        for name, values in rates.items()
    }
