"""Progress of a run, as the runner reports it to its caller (e.g. the CLI's progress bar).

:class:`Progress` is one report: phase, virtual time, nodes up, wall time, and an estimate of
the wall time left; a :data:`ProgressFn` receives them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressFn"]


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is: its phase, virtual time, nodes up, wall time, estimated time left."""

    phase: str
    virtual: float
    virtual_total: float | None
    nodes_up: int
    nodes_total: int
    wall: float
    #: Estimated wall seconds left (None until there is something to estimate from).
    eta: float | None
    #: 0..1: nodes up during the join, then virtual time of the workload.
    fraction: float


ProgressFn = Callable[[Progress], None]
