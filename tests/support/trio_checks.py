"""What the tests check of a trio run: the tasks alive, the tasks spawned."""

from __future__ import annotations

import trio


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task alive in this trio run."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found: set[trio.lowlevel.Task] = set()
    stack = [root]
    while stack:
        task = stack.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


class SpawnCounter(trio.abc.Instrument):
    """A trio instrument that counts task spawns while installed."""

    def __init__(self) -> None:
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1
