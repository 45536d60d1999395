"""The README's main job: the demo runs with no configuration and shows messages flowing."""

from __future__ import annotations

import pytest

from dndm_p2p.cli import main
from dndm_p2p.demo import run_demo


async def test_demo_delivers_to_every_consumer() -> None:
    received = await run_demo(count=4, period=0)
    assert received == {"controller": 4, "logger": 8, "drive-listener": 1}


def test_cli_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--count", "2", "--period", "0"]) == 0
    out = capsys.readouterr().out
    assert "[controller] arm:" in out
    assert "done: {'controller': 2, 'logger': 4, 'drive-listener': 1}" in out


def test_cli_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--count", "0"])


def test_quickstart_example_runs() -> None:
    import runpy
    from pathlib import Path

    import trio

    path = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
    module = runpy.run_path(str(path), run_name="quickstart")
    assert trio.run(module["main"]) == 21.5
