"""A nursery for objects that own background tasks across an ``async with`` block.

With strict exception groups (trio's default), an exception raised by the application *inside*
a block that holds a nursery comes out wrapped in an ``ExceptionGroup``.  For a library object
such as a router or a node that is a surprise: the application's own ``KeyError`` should come
out as itself.  :func:`open_owned_nursery` unwraps exactly that case, a group whose only member
is the exception the block raised; a failure of a background task is never hidden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType

import trio

from protocols.errors import DndmError

__all__ = ["StackOwner", "open_owned_nursery", "race"]


@asynccontextmanager
async def open_owned_nursery() -> AsyncIterator[trio.Nursery]:
    """Open a nursery; re-raise the block's own exception bare when it is the only one."""
    raised: BaseException | None = None
    lone: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                raised = exc
                raise
    except BaseExceptionGroup as group:
        if raised is None or _only_member(group) is not raised:
            raise
        lone = raised
    if lone is not None:
        # Raised outside the except block, so the group does not become its __context__.
        raise lone


class StackOwner:
    """Base of objects whose ``async with`` block owns an :class:`AsyncExitStack`.

    A subclass's ``__aenter__`` enters what the block owns (an owned nursery, handles, …) on a
    stack and stores it in ``_stack``.  Leaving the block runs :meth:`_on_exit` (synchronous:
    close what must stop before the nursery waits for its tasks; ``_stack`` is still set), then
    unwinds the stack with the block's exception, so the nursery sees it.  Leaving twice, or
    without entering, does nothing but :meth:`_on_exit`.
    """

    _stack: AsyncExitStack | None = None

    def _on_exit(self) -> None:
        """Called when the block is left, before the stack unwinds."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._on_exit()
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)


def _only_member(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    while len(group.exceptions) == 1:
        member = group.exceptions[0]
        if not isinstance(member, BaseExceptionGroup):
            return member
        group = member
    return None


async def race(*tasks: Callable[[], Awaitable[object]]) -> None:
    """Run ``tasks`` together until the first one ends, then cancel the others.

    Cancelling a task parked in a node's stream read or write is safe: see
    :mod:`dndm_p2p.node.streamio`.

    If the first to end raised a :class:`~dndm_p2p.errors.DndmError`, it is re-raised bare (not
    in a group), so callers can catch it by type.  Any other exception is a bug and propagates
    as trio raises it.
    """
    failure: DndmError | None = None

    async def run(task: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
        nonlocal failure
        try:
            await task()
        except DndmError as exc:
            if failure is None:
                failure = exc
        scope.cancel()

    async with trio.open_nursery() as nursery:
        for task in tasks:
            nursery.start_soon(run, task, nursery.cancel_scope)
    if failure is not None:
        raise failure
