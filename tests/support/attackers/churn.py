"""Churn many distinct peer ids through one victim: ``python -m tests.support.attackers.churn``.

``--target MADDR --count N --parallel P``: N times, with at most P at once, a fresh Ed25519
identity gets a plain py-libp2p host (Noise, yamux, no DNDM), connects to the victim, waits
until identify has run in both directions (bounded), and disconnects.  Prints one JSON line
``{"event": "progress", "done": n, "failed": f}`` every 250 peers and ``{"event": "done", ...}``
at the end; exits 0.  Every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio
import trio.lowlevel
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity.identify.identify import ID as IDENTIFY_ID

from dndm_p2p.host.build import HostConfig, connect, running_host

_WAIT = 5.0


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args(argv)
    done = failed = 0
    limiter = trio.CapacityLimiter(args.parallel)

    async def worker() -> None:
        nonlocal done, failed
        async with limiter:
            ok = await _counted_peer(args.target)
        done += 1
        failed += 0 if ok else 1
        if done % 250 == 0:
            emit({"event": "progress", "done": done, "failed": failed})

    async with trio.open_nursery() as nursery:
        for _ in range(args.count):
            await limiter.acquire()  # start no more than ``parallel`` at once
            limiter.release()
            nursery.start_soon(worker)
            await trio.lowlevel.checkpoint()
    emit({"event": "done", "done": done, "failed": failed})
    return 0


async def _counted_peer(target: str) -> bool:
    try:
        return await one_peer_served(target)
    except Exception as exc:
        emit({"event": "peer_error", "error": repr(exc)})
        return False


async def one_peer_served(target: str) -> bool:
    """:func:`one_peer`, counting the identify requests the victim sends us."""
    config = HostConfig(close_timeout=2.0)
    async with running_host(create_new_key_pair(), config) as host:
        original = host.get_mux().handlers[TProtocol(str(IDENTIFY_ID))]
        served = trio.Event()

        async def counting(stream: Any) -> None:
            served.set()
            await original(stream)

        host.set_stream_handler(TProtocol(str(IDENTIFY_ID)), counting)
        try:
            victim = await connect(host, target, timeout=_WAIT)
        except Exception:
            return False
        identified = False
        with trio.move_on_after(_WAIT):
            await served.wait()
            while not identified:
                try:
                    identified = bool(
                        host.get_peerstore().supports_protocols(victim, [str(IDENTIFY_ID)])
                    )
                except Exception:
                    identified = False
                if not identified:
                    await trio.sleep(0.01)
        await host.disconnect(victim)
        return identified


if __name__ == "__main__":
    sys.exit(trio.run(main))
