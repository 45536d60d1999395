"""Run an attacker program in another OS process and read the JSON lines it prints.

``async with attacker("tests.support.attackers.churn", "--target", addr) as proc:`` starts
``python -m <module> <args>`` with the repository on ``PYTHONPATH``; :meth:`Attacker.event`
waits (bounded) for a line whose ``event`` field matches.  On exit the process is killed if it
is still running, and reaped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

__all__ = ["Attacker", "attacker"]

ROOT = Path(__file__).resolve().parents[3]


class Attacker:
    """One attacker process and the records it printed so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.records: list[dict[str, Any]] = []
        self.stderr = bytearray()
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream, *, is_stdout: bool) -> None:
        buffer = b""
        async for chunk in stream:
            if not is_stdout:
                self.stderr += chunk
                del self.stderr[:-65536]  # keep the end
                continue
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    self.records.append(record)
            self._changed.set()
            self._changed = trio.Event()
        self._changed.set()

    async def event(self, name: str, *, seconds: float) -> dict[str, Any]:
        """The first record ``{"event": name, ...}``, waiting up to ``seconds`` for it."""
        with trio.fail_after(seconds):
            while True:
                for record in self.records:
                    if record.get("event") == name:
                        return record
                if self.process.returncode is not None:
                    raise AssertionError(
                        f"attacker exited ({self.process.returncode}) without {name!r}: "
                        f"{self.stderr[-2000:].decode(errors='replace')}"
                    )
                await self._changed.wait()


@asynccontextmanager
async def attacker(module: str, *args: str) -> AsyncIterator[Attacker]:
    """Run ``python -m module *args`` for the duration of the block."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(ROOT),
    )
    proc = Attacker(process)
    try:
        async with trio.open_nursery() as nursery:
            stdout, stderr = process.stdout, process.stderr
            assert stdout is not None
            assert stderr is not None
            nursery.start_soon(lambda: proc.pump(stdout, is_stdout=True))
            nursery.start_soon(lambda: proc.pump(stderr, is_stdout=False))
            try:
                yield proc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(5):
                await process.wait()
