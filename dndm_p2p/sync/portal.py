"""The background trio thread that serves blocking code: :class:`TrioThread`.

One thread runs ``trio.run``; any other thread calls into it with :meth:`TrioThread.run`
(``trio.from_thread.run`` with the thread's token), which blocks the caller until the trio
function returns and raises its exception (the same object).  An optional ``timeout`` bounds
the trio side and raises :class:`~dndm_p2p.errors.Timeout`.  :meth:`hold` keeps a trio async
context manager entered in a trio task of its own until :meth:`Held.exit`.

Every open thread is stopped at interpreter exit (``atexit``), and by :meth:`TrioThread.stop`;
stopping cancels every trio task and joins the thread.  The thread is a daemon so that a
program that never stops it can still exit; the atexit hook stops it cleanly first.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, Future
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

import trio

from dndm_p2p.errors import Closed, Timeout

__all__ = ["Held", "TrioThread", "in_pool", "serving"]

R = TypeVar("R")

_open_threads: weakref.WeakSet[TrioThread] = weakref.WeakSet()


class TrioThread:
    """A trio run in a daemon thread, called into from any other thread."""

    def __init__(self, name: str = "dndm-p2p trio") -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        _open_threads.add(self)

    def _main(self) -> None:
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                self._ready.set()
                await trio.sleep_forever()

        try:
            trio.run(main)
        except BaseException as exc:  # kept for the thread that started this one
            self._error = exc
        finally:
            self._nursery = None
            self._ready.set()

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return self._token is not None and self._thread.is_alive()

    def _checked_token(self) -> trio.lowlevel.TrioToken:
        token = self._token
        if token is None or not self._thread.is_alive():
            raise Closed("the dndm-p2p trio thread has stopped")
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking dndm-p2p call from inside its own trio thread")
        return token

    def run(self, fn: Callable[..., Awaitable[R]], *args: Any, timeout: float | None = None) -> R:
        """Block until ``await fn(*args)`` has run in the trio thread; return or raise its
        outcome.  With ``timeout`` (seconds) raise :class:`Timeout` when it takes longer."""
        token = self._checked_token()
        if timeout is None:
            return trio.from_thread.run(fn, *args, trio_token=token)

        async def bounded() -> R:
            with trio.move_on_after(timeout):
                return await fn(*args)
            raise Timeout(f"no outcome within {timeout:g} s", timeout=timeout)

        return trio.from_thread.run(bounded, trio_token=token)

    def run_sync(self, fn: Callable[..., R], *args: Any) -> R:
        """Block until ``fn(*args)`` has run in the trio thread; return or raise its outcome."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._checked_token())

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a trio task of the thread's nursery, without waiting."""

        def start() -> None:
            if self._nursery is not None:
                self._nursery.start_soon(fn, *args)

        self._checked_token().run_sync_soon(start)

    def hold(self, manager: AbstractAsyncContextManager[R]) -> Held[R]:
        """Enter ``manager`` in a trio task that keeps it entered until :meth:`Held.exit`."""
        entered = threading.Event()
        exit_requested = trio.Event()
        held: Held[R] = Held(self, exit_requested)

        async def keep() -> None:
            try:
                async with manager as value:
                    held.value = value
                    entered.set()
                    await exit_requested.wait()
            except BaseException as exc:
                held.error = exc
                if not isinstance(exc, Exception | trio.Cancelled):
                    raise
            finally:
                held.ended.set()
                entered.set()

        self.start_soon(keep)
        entered.wait()
        if held.error is not None:
            raise held.error
        return held

    def stop(self) -> None:
        """Cancel every trio task and join the thread (idempotent; not from the thread)."""
        token, self._token = self._token, None
        _open_threads.discard(self)
        if token is None:
            return
        nursery = self._nursery
        if nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(nursery.cancel_scope.cancel)
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Held(Generic[R]):
    """A trio context manager held entered by a :class:`TrioThread` task."""

    value: R

    def __init__(self, thread: TrioThread, exit_requested: trio.Event) -> None:
        self._thread = thread
        self._exit_requested = exit_requested
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def exit(self) -> None:
        """Leave the context in its trio task, wait, and raise what leaving raised."""
        if self._thread.running:
            self._thread.run_sync(self._exit_requested.set)
        self.ended.wait()
        if self.error is not None and not isinstance(self.error, trio.Cancelled):
            raise self.error


async def in_pool(pool: Executor, fn: Callable[..., R], *args: Any) -> R:
    """From trio: run ``fn(*args)`` on ``pool`` and return its outcome, without a trio worker
    thread.  Cancelling the trio task cancels the call if it has not started, then waits."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_future: Future[R]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future = pool.submit(fn, *args)
    future.add_done_callback(wake)
    try:
        await done.wait()
    except trio.Cancelled:
        if not future.cancel():
            with trio.CancelScope(shield=True):
                await done.wait()
        raise
    return future.result()


@asynccontextmanager
async def serving(serve: Callable[..., Awaitable[None]]) -> AsyncIterator[None]:
    """A context in which ``await nursery.start(serve)`` runs (cancelled on exit)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        yield
        nursery.cancel_scope.cancel()


@atexit.register
def _stop_open_threads() -> None:
    for thread in list(_open_threads):
        thread.stop()
