"""The trio run that serves asyncio code: a trio guest run on the running asyncio loop.

One :class:`GuestRuntime` exists per asyncio loop while some facade object uses it (counted by
:meth:`GuestRuntime.acquire` / :meth:`GuestRuntime.release`).  Trio and asyncio then share one
thread and take turns on it, so asyncio code may call trio's *synchronous* operations directly
(``Intent.send_nowait``, ``Interest.receive_nowait``, cancelling a scope, setting an event):
trio reschedules its waiting tasks and wakes its own loop.  Only waiting needs a trio task,
started by :meth:`GuestRuntime.run`, whose outcome arrives in an asyncio future.

Contracts:

- :meth:`run` returns the trio function's value or raises its exception (the same object);
  cancelling the awaiting asyncio task cancels the trio task and waits until it has ended.
- :meth:`hold` enters a trio async context manager in a trio task of its own, and exits it in
  that same task when the asyncio side asks.
- :meth:`await_asyncio` is the other direction: trio code awaits an asyncio coroutine, and
  cancelling the trio task cancels the asyncio task.
- The run ends when the last user releases it, or when the asyncio loop cancels the
  runtime's keeper task (``asyncio.run`` does that to every task when its main coroutine ends,
  or on Ctrl-C): every trio task is cancelled and the run finishes before the loop closes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import outcome
import trio

from dndm_p2p.errors import Closed

__all__ = ["GuestRuntime", "Held"]

R = TypeVar("R")

_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GuestRuntime] = (
    weakref.WeakKeyDictionary()
)


class GuestRuntime:
    """A trio guest run hosted by one asyncio loop; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._users = 0
        self._nursery: trio.Nursery | None = None
        self._done: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifetime --------------------------------------------------------------------------------

    @classmethod
    async def acquire(cls) -> GuestRuntime:
        """The running loop's runtime, started if needed; pair every call with :meth:`release`."""
        loop = asyncio.get_running_loop()
        runtime = _runtimes.get(loop)
        if runtime is None or runtime._stopping:
            if runtime is not None:
                await runtime._finished()
            runtime = cls(loop)
            _runtimes[loop] = runtime
            await runtime._start()
        runtime._users += 1
        return runtime

    async def release(self) -> None:
        """Drop one use; the last one stops the run and waits until it has finished."""
        self._users -= 1
        if self._users <= 0:
            self._stop()
            await self._finished()

    async def _start(self) -> None:
        started: asyncio.Future[None] = self.loop.create_future()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                started.set_result(None)
                await trio.sleep_forever()

        def done(result: outcome.Outcome[None]) -> None:
            self._nursery = None
            if not self._done.done():
                self._done.set_result(result)
            if not started.done():
                started.set_exception(Closed("the trio guest run ended before it started"))

        trio.lowlevel.start_guest_run(
            main,
            run_sync_soon_threadsafe=self._call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._call_soon,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=True,
            strict_exception_groups=True,
        )
        await started
        self._keeper = self.loop.create_task(self._keep(), name="dndm-p2p trio guest run")

    def _call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def _call_soon(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon(fn)

    async def _keep(self) -> None:
        """Lives as long as the run; cancelled by the loop's shutdown, it stops the run first."""
        try:
            await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._stop()
            await self._finished()
            raise

    def _stop(self) -> None:
        self._stopping = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _finished(self) -> None:
        """Wait until the trio run has ended, even if the waiting task is cancelled."""
        while not self._done.done():
            try:
                await asyncio.shield(self._done)
            except asyncio.CancelledError:
                if self._done.done():
                    break
                continue
        keeper = self._keeper
        if keeper is not None and keeper is not asyncio.current_task() and not keeper.done():
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        if _runtimes.get(self.loop) is self:
            del _runtimes[self.loop]
        result = self._done.result()
        if isinstance(result, outcome.Error) and not _only_cancelled(result.error):
            result.unwrap()

    def _nursery_or_raise(self) -> trio.Nursery:
        if self._nursery is None or self._stopping:
            raise Closed("the dndm-p2p runtime of this event loop has stopped")
        return self._nursery

    # -- asyncio awaits trio ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run ``await fn(*args)`` in a new trio task and return its outcome (see module doc)."""
        nursery = self._nursery_or_raise()
        result: asyncio.Future[R] = self.loop.create_future()
        ended: asyncio.Future[None] = self.loop.create_future()
        scope = trio.CancelScope()

        async def task() -> None:
            try:
                with scope:
                    value = await fn(*args)
                    if not result.done():
                        result.set_result(value)
            except BaseException as exc:  # handed to the asyncio side, where it is raised
                if not result.done():
                    if isinstance(exc, trio.Cancelled):
                        result.set_exception(Closed("the dndm-p2p runtime stopped"))
                    else:
                        result.set_exception(exc)
                if not isinstance(exc, trio.Cancelled | Exception):
                    raise
            finally:
                ended.set_result(None)

        nursery.start_soon(task)
        try:
            return await result
        except asyncio.CancelledError:
            scope.cancel()
            await _wait_uncancellable(ended)
            raise

    async def hold(self, manager: AbstractAsyncContextManager[R]) -> Held[R]:
        """Enter ``manager`` in a trio task that keeps it entered until :meth:`Held.exit`."""
        exit_requested = trio.Event()
        entered: asyncio.Future[R] = self.loop.create_future()

        async def keep() -> None:
            async with manager as value:
                entered.set_result(value)
                await exit_requested.wait()

        held: Held[R] = Held(exit_requested)
        held.task = asyncio.ensure_future(self.run(keep), loop=self.loop)
        entering: asyncio.Future[R] = asyncio.ensure_future(entered, loop=self.loop)
        waited: list[asyncio.Future[Any]] = [held.task, entering]
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if entering.done():
            held.value = entering.result()
            return held
        entering.cancel()
        held.task.result()  # raises why entering failed
        raise Closed("the context manager ended while it was entered")

    # -- trio awaits asyncio ---------------------------------------------------------------------

    async def await_asyncio(self, coro: Coroutine[Any, Any, R]) -> R:
        """From trio: run ``coro`` as an asyncio task and return its result.

        Cancelling the trio task cancels the asyncio task and waits for it to end.
        """
        task = self.loop.create_task(coro)
        finished = trio.Event()
        task.add_done_callback(lambda _task: finished.set())
        try:
            await finished.wait()
        except trio.Cancelled:
            task.cancel()
            with trio.CancelScope(shield=True):
                await finished.wait()
            raise
        return task.result()


class Held(AbstractAsyncContextManager["Held[R]"]):
    """A trio context manager held entered by a :class:`GuestRuntime` task."""

    value: R
    task: asyncio.Future[None]

    def __init__(self, exit_requested: trio.Event) -> None:
        self._exit_requested = exit_requested

    async def exit(self) -> None:
        """Leave the context in its trio task and wait; raise what leaving raised."""
        self._exit_requested.set()
        await _wait_uncancellable(self.task)
        self.task.result()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.exit()


async def _wait_uncancellable(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` even when the waiting task is cancelled meanwhile; then raise
    :class:`asyncio.CancelledError` once it is done."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                break
            cancelled = True
        except BaseException:
            break
    if cancelled:
        raise asyncio.CancelledError


def _only_cancelled(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in error.exceptions)
    return False
