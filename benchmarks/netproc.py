"""Two-process plumbing for the network benchmarks: a child process and its JSON-line channel.

The benchmark (the *parent*) starts a child with :func:`spawn`; the child is the same program
run with other arguments (``python -m benchmarks.bench_network --role server ...``).  They talk
in JSON objects, one per line:

* the child writes to its stdout: first a ready line (``{"ready": true, ...}`` with whatever
  addresses the parent needs), later one answer per command (``{"ok": true, ...}`` or
  ``{"ok": false, "error": "..."}``); any other output must go to stderr;
* the parent writes commands to the child's stdin; the child exits when its stdin closes.

:class:`Child` reads the child's stdout in a background thread, so every read has a timeout
and a child that dies is noticed at once (its stdout ends).  Blocking reads are fine from
synchronous code; trio code uses :meth:`Child.areceive`, which waits in a worker thread and
keeps the event loop (and the libp2p host on it) running.  On the child side,
:func:`announce` writes a line and :func:`read_command` / :func:`aread_command` read one.

:func:`pinned` puts the parent on one CPU and the child on another (see there).

``with spawn(...) as child:`` always ends the child: its stdin is closed, it gets a few seconds
to exit, then it is killed, and it is reaped in every case.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import trio

from benchmarks.common import BenchmarkFailure

__all__ = [
    "Child",
    "ChildFailed",
    "announce",
    "aread_command",
    "free_tcp_port",
    "pin_process",
    "pinned",
    "read_command",
    "spawn",
]

#: How long a child may take to start and print its ready line, in seconds.
READY_TIMEOUT = 60.0
#: How long a child gets to exit after its stdin closed, before it is killed.
EXIT_GRACE = 5.0

_EOF = object()


class ChildFailed(BenchmarkFailure):
    """The child process died, answered with an error, or did not answer in time."""


class Child:
    """A running child process and its JSON-line channel (see the module docstring)."""

    def __init__(self, process: subprocess.Popen[str], name: str) -> None:
        self.process = process
        self.name = name
        self._lines: queue.Queue[object] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read_stdout, name=f"{name}-stdout", daemon=True
        )
        self._reader.start()

    def _read_stdout(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            text = line.strip()
            if text.startswith("{"):
                try:
                    self._lines.put(json.loads(text))
                    continue
                except json.JSONDecodeError:
                    pass
            if text:  # stray output (a library printing on stdout): pass it on to stderr
                print(f"[{self.name}] {text}", file=sys.stderr, flush=True)
        self._lines.put(_EOF)

    def send(self, command: dict[str, Any]) -> None:
        """Write one command line to the child's stdin."""
        stdin = self.process.stdin
        if stdin is None or stdin.closed:
            raise ChildFailed(f"{self.name}: its stdin is closed")
        try:
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildFailed(f"{self.name}: cannot send {command!r}: {exc}") from exc

    def receive(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line, waiting at most ``timeout`` seconds.

        Raises :class:`ChildFailed` when the child's stdout ends (it died), nothing comes in
        time, or the line is an error answer (``"ok": false``).
        """
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildFailed(f"{self.name}: no answer within {timeout:g} s") from None
        if item is _EOF:
            self._lines.put(_EOF)  # later reads fail the same way
            code = self.process.poll()
            raise ChildFailed(f"{self.name}: the child exited (status {code})")
        assert isinstance(item, dict)
        if item.get("ok") is False:
            raise ChildFailed(f"{self.name}: {item.get('error', 'failed')}")
        return item

    async def areceive(self, seconds: float) -> dict[str, Any]:
        """:meth:`receive` for trio code: waits (at most ``seconds``) in a worker thread."""
        return await trio.to_thread.run_sync(self.receive, seconds, abandon_on_cancel=True)  # type: ignore[call-arg,unused-ignore]

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``command`` and return the answer."""
        self.send(command)
        return self.receive(timeout)

    async def arequest(self, command: dict[str, Any], seconds: float) -> dict[str, Any]:
        """:meth:`request` for trio code (waits at most ``seconds`` for the answer)."""
        self.send(command)
        return await self.areceive(seconds)

    def close(self) -> int | None:
        """End the child: close its stdin, wait a little, kill it if needed; reap it.

        Returns its exit status (negative: killed by that signal).
        """
        process = self.process
        try:
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        except OSError:
            pass
        try:
            return process.wait(timeout=EXIT_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()
            self._reader.join(timeout=1.0)


@contextmanager
def spawn(
    args: Sequence[str],
    name: str,
    *,
    ready_timeout: float = READY_TIMEOUT,
    cpu: int | None = None,
    stderr: IO[str] | None = None,
) -> Iterator[tuple[Child, dict[str, Any]]]:
    """Start ``python -m <args...>`` as a child and yield it with its ready line.

    The child inherits stderr unless ``stderr`` (an open file) is given; stdin and stdout are
    the JSON-line channel.  With ``cpu``, every thread of the child is pinned to that CPU once
    it is ready (:func:`pin_process`).  However the block ends, the child is ended and reaped
    (:meth:`Child.close`).
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=env,
        stderr=stderr,
    )
    child = Child(process, name)
    try:
        ready = child.receive(ready_timeout)
        if not ready.get("ready"):
            raise ChildFailed(f"{name}: expected a ready line, got {ready!r}")
        if cpu is not None:
            pin_process(process.pid, cpu)
        yield child, ready
    finally:
        child.close()


# -- the child's side ------------------------------------------------------------------------


def announce(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout (the parent's channel) and flush it."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def read_command() -> dict[str, Any] | None:
    """The next command from stdin, or ``None`` when stdin closed (time to exit)."""
    while True:
        line = sys.stdin.readline()
        if not line:
            return None
        if line.strip():
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ChildFailed(f"a command must be a JSON object, not {line!r}")
            return command


async def aread_command() -> dict[str, Any] | None:
    """:func:`read_command` for trio code: waits in a worker thread."""
    return await trio.to_thread.run_sync(read_command, abandon_on_cancel=True)  # type: ignore[call-arg,unused-ignore]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for tools that need a fixed port)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -- CPU placement -----------------------------------------------------------------------------


def pin_process(pid: int, cpu: int) -> bool:
    """Pin every current thread of process ``pid`` to ``cpu`` (Linux); False if impossible.

    Threads the process starts later inherit the CPU from the thread that starts them.
    """
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    pinned_any = False
    for tid in threads:
        try:
            os.sched_setaffinity(tid, {cpu})
            pinned_any = True
        except OSError:  # the thread ended meanwhile, or the CPU is not allowed
            continue
    return pinned_any


@contextmanager
def pinned(enabled: bool = True) -> Iterator[int | None]:
    """Pin this process's calling thread to one CPU and yield another CPU for the child.

    Two processes exchanging messages on a 2-CPU machine otherwise land on the same CPU or on
    different ones from run to run, and round-trip times differ by half between the two
    cases; pinning makes runs comparable.  Yields ``None`` (and pins nothing) when disabled,
    when fewer than two CPUs are available, or on systems without CPU affinity.  The calling
    thread's previous affinity is restored on exit; threads started meanwhile keep the pin.
    """
    if not enabled or not hasattr(os, "sched_getaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpus = sorted(before)
    if len(cpus) < 2:
        yield None
        return
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield cpus[1]
    finally:
        os.sched_setaffinity(0, before)
