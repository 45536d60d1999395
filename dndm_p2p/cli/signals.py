"""SIGINT and SIGTERM: a clean stop, even when they come while a command is starting up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "early_signals", "early_stop"]

#: The signals that stop a command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Stop signals received before a command's node was running (it then stops at once).
_early_stops: list[str] = []


@contextmanager
def early_signals() -> Iterator[None]:
    """Until a command installs its own signal receiver, remember SIGINT/SIGTERM instead of
    dying (or raising KeyboardInterrupt) half-way through starting up.

    Outside the main thread (where handlers cannot be installed) it does nothing.  The previous
    handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _early_stops.clear()

    def remember(signum: int, frame: object) -> None:
        _early_stops.append(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, remember) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _early_stops.clear()


def early_stop() -> str | None:
    """The name of the first stop signal remembered by :func:`early_signals`, else None."""
    return _early_stops[0] if _early_stops else None
