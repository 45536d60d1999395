"""The node's optional parts (discovery, NAT traversal, the admin endpoint, the address book's
saver), all started and stopped the same way.

A :class:`Component` is anything with ``async run(*, task_status)``: it reports itself started
through ``task_status`` and then serves until cancelled, cleaning up as it unwinds.
:class:`Components` runs a list of them in the node's nursery, each under its own cancel scope,
and stops them in the reverse order of their start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from dndm_p2p.errors import DndmError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from dndm_p2p.node.addressbook import AddressBook

__all__ = ["AddressBookSaver", "Component", "Components"]


class Component(Protocol):
    """An optional part of the node: started once, serves until cancelled."""

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start, call ``task_status.started()`` once ready, then serve until cancelled."""
        ...


class Components:
    """The running components of one node, in their start order."""

    def __init__(self) -> None:
        self._scopes: list[trio.CancelScope] = []

    async def start(self, nursery: trio.Nursery, component: Component) -> None:
        """Start ``component`` in ``nursery``; returns once it reports itself started (and
        raises what its start raised)."""
        scope = trio.CancelScope()
        self._scopes.append(scope)
        await nursery.start(_run_in_scope, component, scope)

    def stop(self) -> None:
        """Stop every component, the last started first (idempotent)."""
        while self._scopes:
            self._scopes.pop().cancel()


async def _run_in_scope(
    component: Component,
    scope: trio.CancelScope,
    *,
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await component.run(task_status=task_status)


class AddressBookSaver:
    """Saves a changed address book every ``interval`` seconds, and once more when stopped."""

    def __init__(
        self, book: AddressBook, interval: float, on_error: Callable[[DndmError], None]
    ) -> None:
        self._book = book
        self._interval = interval
        self._on_error = on_error

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Save until cancelled (see :meth:`AddressBook.autosave`)."""
        await self._book.autosave(self._interval, on_error=self._on_error, task_status=task_status)
