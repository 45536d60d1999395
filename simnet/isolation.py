"""Isolation: a failing simulated node does not end the run, nor does a runaway run go on.

* :func:`failure_of` tells a node's failure (a crash, recorded and survived) from a
  cancellation (the node was killed, or the run ends); :func:`describe` names a failure for
  the ``crash`` event.
* :class:`SimulatedCrash` is what a ``crash`` event raises inside a node
  (:func:`raise_crash`).
* :func:`start_watchdog` stops a run that takes too long in wall time; it is a thread, so it
  fires even while virtual time stands still in a CPU-bound storm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio

__all__ = ["SimulatedCrash", "describe", "failure_of", "raise_crash", "start_watchdog"]


class SimulatedCrash(RuntimeError):
    """Raised inside a node by a ``crash`` event (to exercise the runner's isolation)."""


async def raise_crash(index: int) -> None:
    """Raise :class:`SimulatedCrash` in the calling task (run it in node ``index``'s tasks)."""
    await trio.lowlevel.checkpoint()
    raise SimulatedCrash(f"crash event injected into node {index}")


def failure_of(exc: BaseException) -> BaseException | None:
    """The non-cancellation part of ``exc`` (None: a pure cancellation or an interrupt)."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:
            return None
        return rest if all(isinstance(e, Exception) for e in _leaves(rest)) else None
    return exc if isinstance(exc, Exception) else None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """Every leaf exception of ``exc`` as ``Type: message``, joined, at most 500 characters."""
    leaves = _leaves(exc)
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaves)[:500]


def start_watchdog(seconds: float, stop: Callable[[str], None]) -> threading.Timer:
    """Call ``stop("watchdog")`` in the current trio run after ``seconds`` of wall time.

    Call it inside the run; ``cancel()`` the returned timer when the run is over.  A timer that
    fires after the run has finished does nothing.
    """
    token = trio.lowlevel.current_trio_token()
    watchdog = threading.Timer(seconds, _call_soon, (token, stop, "watchdog"))
    watchdog.daemon = True
    watchdog.start()
    return watchdog


def _call_soon(token: trio.lowlevel.TrioToken, fn: Callable[[str], None], arg: str) -> None:
    try:
        token.run_sync_soon(fn, arg)
    except trio.RunFinishedError:
        return
