"""The asyncio and blocking facades are generic like the trio handles: checked by mypy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent(
    """
    from typing import assert_type

    from dndm_p2p import aio, sync
    from tests.proto.messages_pb2 import Foo, Reply, Request


    async def use_aio(router: aio.Router, node: aio.Node) -> None:
        out = router.publish("x", Foo)
        assert_type(out, aio.Intent[Foo])
        sub = node.subscribe("x", Foo)
        assert_type(sub, aio.Interest[Foo])
        assert_type(await sub.receive(), Foo)
        assert_type(sub.receive_nowait(), Foo)
        assert_type(await sub.receive_batch(8), list[Foo])
        async for msg in sub:
            assert_type(msg, Foo)
        async with sub as entered:
            assert_type(entered, aio.Interest[Foo])
        await out.send(Foo(text="ok"))
        async with aio.Caller(router, "svc", Request, Reply) as caller:
            assert_type(await caller.call(Request()), Reply)


    def use_sync(router: sync.Router, node: sync.Node) -> None:
        out = router.publish("x", Foo)
        assert_type(out, sync.Intent[Foo])
        sub = node.subscribe("x", Foo)
        assert_type(sub, sync.Interest[Foo])
        assert_type(sub.receive(timeout=1.0), Foo)
        assert_type(sub.receive_batch(8), list[Foo])
        for msg in sub:
            assert_type(msg, Foo)
        with sub as entered:
            assert_type(entered, sync.Interest[Foo])
        out.send(Foo(text="ok"), timeout=1.0)
        with sync.Caller(router, "svc", Request, Reply) as caller:
            assert_type(caller.call(Request()), Reply)
    """
)

WRONG = textwrap.dedent(
    """
    from dndm_p2p import aio, sync
    from tests.proto.messages_pb2 import Bar, Foo


    async def use(router: aio.Router, blocking: sync.Router) -> None:
        await router.publish("x", Foo).send(Bar(a=1))
        blocking.publish("x", Foo).send(Bar(a=1))
    """
)


def _mypy(tmp_path: Path, source: str) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(path),
        ]
    )
    return stdout + stderr, status


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_facade_handles_carry_the_message_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    output, status = _mypy(tmp_path, SNIPPET)
    assert status == 0, output
    output, status = _mypy(tmp_path, WRONG)
    assert status == 1, output
    assert output.count('incompatible type "Bar"') == 2, output
