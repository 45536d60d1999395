"""Every program in examples/ runs to its end (the server one until Ctrl-C, status 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
#: Examples that serve until interrupted, with the arguments that make them pick a free port.
SERVERS = {"asyncio_server.py": ["--port", "0"]}


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str) -> None:
    command = [sys.executable, str(ROOT / "examples" / name), *SERVERS.get(name, [])]
    if name not in SERVERS:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ENV)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), "an example prints what it did"
        return
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert child.stdout is not None
        assert int(child.stdout.readline()) > 0
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, err
