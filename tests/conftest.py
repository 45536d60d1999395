"""Shared fixtures: an open router, and checks that no test leaks a task or a py-libp2p patch."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from dndm_p2p import Router
from tests.support.libp2p_patches import changes, snapshot
from tests.support.trio_checks import live_tasks


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every trio test a leak check (sync tests have no trio run to inspect)."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _fail_on_leaked_tasks(item.obj)


def _fail_on_leaked_tasks(
    test: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """Wrap a trio test: after it returns, no task it started may still be alive."""

    @functools.wraps(test)
    async def checked(*args: object, **kwargs: object) -> None:
        before = live_tasks()
        await test(*args, **kwargs)
        # Let tasks that were told to stop run to their end, then look for survivors.
        await trio.testing.wait_all_tasks_blocked()
        leaked = live_tasks() - before - {trio.lowlevel.current_task()}
        assert not leaked, f"tasks leaked by the test: {sorted(t.name for t in leaked)}"

    return checked


@pytest.fixture(autouse=True)
def _no_libp2p_patch_outlives_its_test() -> Iterator[None]:
    """Fail a test after which a py-libp2p class or module the fixes touch has changed."""
    before = snapshot()
    yield
    changed = changes(before, snapshot())
    assert not changed, f"py-libp2p classes or modules changed by the test: {changed}"


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    """An open router; the test fails if a route or interest outlives its handles."""
    async with Router(name="test") as r:
        yield r
        assert r.routes() == [], f"routes left behind: {r.routes()}"
        assert r.interests() == [], f"interests left behind: {r.interests()}"
