"""Handles are generic: a type checker knows each message's type without a cast."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent(
    """
    from typing import assert_type

    from dndm_p2p import Intent, Interest, Router
    from tests.proto.messages_pb2 import Bar, Foo


    async def use(router: Router) -> None:
        out = router.publish("x", Foo)
        assert_type(out, Intent[Foo])
        sub = router.subscribe("x", Foo)
        assert_type(sub, Interest[Foo])
        assert_type(await sub.receive(), Foo)
        assert_type(sub.receive_nowait(), Foo)
        assert_type(await sub.receive_batch(8), list[Foo])
        async for msg in sub:
            assert_type(msg, Foo)
        await out.send(Foo(text="ok"))
    """
)

WRONG = textwrap.dedent(
    """
    from dndm_p2p import Router
    from tests.proto.messages_pb2 import Bar, Foo


    async def use(router: Router) -> None:
        out = router.publish("x", Foo)
        await out.send(Bar(a=1))
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
@pytest.mark.timeout(180)
def test_handles_carry_the_message_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    output, status = _mypy(tmp_path, SNIPPET)
    assert status == 0, output
    output, status = _mypy(tmp_path, WRONG)
    assert status == 1, output
    assert 'incompatible type "Bar"' in output, output
