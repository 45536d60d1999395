"""The README's main job: ``dndm demo`` runs a 3-node mesh with no configuration."""

from __future__ import annotations

import re

import pytest

from dndm_p2p.cli.main import main
from dndm_p2p.demo import run_demo


async def test_demo_delivers_to_every_consumer(capsys: pytest.CaptureFixture[str]) -> None:
    received = await run_demo(count=4, period=0)
    assert received == {"controller": 4, "logger": 8, "logger:twist": 4}
    out = capsys.readouterr().out
    # Three real nodes on loopback, each printing the address the others connect to.
    addrs = re.findall(r"listening on (/ip4/127\.0\.0\.1/tcp/\d+/p2p/\w+)", out)
    assert len(set(addrs)) == 3
    assert "[controller]  connected to sensors" in out
    assert "[logger]      connected to controller" in out


def test_cli_demo_shows_linking_and_messages_with_latency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--count", "2", "--period", "0"]) == 0
    out = capsys.readouterr().out
    assert "nobody listens yet" in out
    # Who linked to whom, and from which peer.
    assert re.search(
        r"\[sensors\]\s+Temperature@robot\.arm\.temp linked to controller \(…\w{6}\) and "
        r"logger \(…\w{6}\)",
        out,
    )
    assert re.search(
        r"\[logger\]\s+pattern robot\.\*\.temp linked to Temperature@robot\.arm\.temp and "
        r"Temperature@robot\.leg\.temp, published by sensors",
        out,
    )
    # Messages flowing, with their sender and latency.
    assert len(re.findall(r"\[controller\]\s+arm .* from sensors  latency [\d,]+ µs", out)) == 2
    assert len(re.findall(r"\[logger\]\s+(arm|leg) .* from sensors  latency", out)) == 4
    assert len(re.findall(r"\[logger\]\s+twist .* from sensors  latency", out)) == 2
    assert "done: the controller got 2 arm temperatures, the logger 4 temperatures" in out


def test_cli_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["demo", "--count", "0"])
    assert raised.value.code == 2


def test_quickstart_example_runs() -> None:
    import runpy
    from pathlib import Path

    import trio

    path = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    module = runpy.run_path(str(path), run_name="quickstart")
    assert trio.run(module["main"]) == 21.5
