"""Other OS processes for the tests: scriptable peers and the ``dndm`` command.

They are read through the JSON lines they print; every wait is bounded, and every process is
killed and reaped when its test ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from dndm_p2p.nurseries import open_owned_nursery

ROOT = Path(__file__).resolve().parents[2]
#: The ``dndm`` console script of this environment, or the module when it is not installed.
_SCRIPT = Path(sys.executable).with_name("dndm")
DNDM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dndm_p2p.cli"]
PEER = [sys.executable, "-m", "tests.support.mp_peer"]
#: Bound of each wait for a process's output, in seconds (generous: CI machines are slow).
WAIT = 30.0

Record = dict[str, Any]


class Proc:
    """One child process, with its stdout and stderr parsed into JSON records as they come."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process
        self.out: list[Record] = []
        self.err: list[Record] = []
        self.raw_err: list[str] = []
        self.closed = {"out": False, "err": False}
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream, which: str) -> None:
        """Read one of the process's output streams to its end."""
        records = self.out if which == "out" else self.err
        pending = b""
        try:
            while True:
                chunk = await stream.receive_some(1 << 16)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    try:
                        record = json.loads(text)
                    except ValueError:
                        record = None
                    if isinstance(record, dict):
                        records.append(record)
                    elif which == "err":
                        self.raw_err.append(text)
                self._bump()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self.closed[which] = True
            self._bump()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def mark(self, which: str = "out") -> int:
        """A position in the output: later waits can look only at what follows it."""
        return len(self.out if which == "out" else self.err)

    async def wait_for(
        self,
        predicate: Callable[[Record], bool],
        *,
        since: int = 0,
        which: str = "out",
        seconds: float = WAIT,
        what: str = "",
    ) -> Record:
        """The first record (after ``since``) that satisfies ``predicate``; fails after a bound."""
        records = self.out if which == "out" else self.err
        index = since
        with trio.move_on_after(seconds):
            while True:
                while index < len(records):
                    if predicate(records[index]):
                        return records[index]
                    index += 1
                if self.closed[which]:
                    break
                await self._changed.wait()
        raise AssertionError(
            f"{self.name}: no {what or 'matching record'} on std{which} "
            f"(exit code {self.process.returncode})\n{self.transcript()}"
        )

    async def event(self, name: str, /, *, since: int = 0, **fields: Any) -> Record:
        """The first ``{"event": name, ...fields}`` record on stdout after ``since``."""
        return await self.wait_for(
            lambda r: r.get("event") == name and all(r.get(k) == v for k, v in fields.items()),
            since=since,
            what=f"{name} {fields}",
        )

    async def send(self, **command: Any) -> None:
        """Write one JSON command line to the process's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps(command) + "\n").encode())

    def values(self, handle: str) -> list[Any]:
        """Everything the subscription ``handle`` received so far, in order."""
        return [
            value
            for r in self.out
            if r.get("event") == "recv" and r.get("id") == handle
            for value in r["values"]
        ]

    async def wait_values(self, handle: str, count: int, seconds: float = WAIT) -> list[Any]:
        """Wait until ``handle`` received at least ``count`` messages, and return them all."""
        with trio.move_on_after(seconds):
            while len(self.values(handle)) < count:
                if self.closed["out"]:
                    break
                await self._changed.wait()
            return self.values(handle)
        raise AssertionError(
            f"{self.name}: {handle} received {len(self.values(handle))} of {count}\n"
            f"{self.transcript()}"
        )

    async def exit_code(self, seconds: float = WAIT) -> int:
        """Wait for the process to end and return its exit status."""
        with trio.move_on_after(seconds):
            return await self.process.wait()
        raise AssertionError(f"{self.name} did not exit within {seconds} s\n{self.transcript()}")

    def transcript(self) -> str:
        """The end of the process's output, for failure messages."""
        out = "\n".join(json.dumps(r)[:300] for r in self.out[-15:])
        err = "\n".join([json.dumps(r)[:300] for r in self.err[-10:]] + self.raw_err[-20:])
        return f"--- stdout of {self.name}:\n{out}\n--- stderr of {self.name}:\n{err}"


class Cluster:
    """Starts processes and guarantees that each one is killed and reaped."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.procs: list[Proc] = []

    async def start(self, name: str, argv: list[str], *, stdin: bool = True) -> Proc:
        """Start a process (without waiting for it to be ready)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        proc = Proc(name, process)
        self.procs.append(proc)
        assert process.stdout is not None
        assert process.stderr is not None
        self.nursery.start_soon(proc.pump, process.stdout, "out")
        self.nursery.start_soon(proc.pump, process.stderr, "err")
        return proc

    async def peer(self, name: str, *args: str) -> tuple[Proc, Record]:
        """Start an ``mp_peer`` and wait for its ``listening`` record."""
        proc = await self.start(name, [*PEER, "--name", name, *args])
        return proc, await proc.event("listening")

    async def reap(self) -> None:
        """Kill every process still running and wait for each one (bounded)."""
        for proc in self.procs:
            if proc.process.returncode is None:
                proc.process.kill()
        for proc in self.procs:
            with trio.move_on_after(10):
                await proc.process.wait()
            for stream in (proc.process.stdin, proc.process.stdout, proc.process.stderr):
                if stream is not None:
                    await stream.aclose()


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    """A :class:`Cluster` whose processes are all gone when the block ends."""
    async with open_owned_nursery() as nursery:
        group = Cluster(nursery)
        try:
            yield group
        finally:
            with trio.CancelScope(shield=True):
                await group.reap()
            nursery.cancel_scope.cancel()


def linked(peer: str) -> Callable[[Record], bool]:
    """A predicate: a ``link`` record of a link to ``peer`` appeared."""
    return lambda r: r.get("event") == "link" and r["kind"] == "linked" and r["peer"] == peer
