"""py-libp2p Kademlia lookups at scale, stock against :mod:`protocols.libp2p_fixes.kad`
(simnet-notes §2.2, 2.6).

N real py-libp2p hosts (KadDHT servers, plaintext + mplex by default) on a
:class:`~simnet.net.SimNetwork` under virtual time.  One-way latency is 12.5-37.5 ms per pair.

1. **Join** ("random boot", testground style): node 0 starts alone; every other node dials a
   random node that has already joined, adds it to its routing table and looks itself up (as
   go-libp2p does).  ``--join-concurrency`` joins run at once.
2. **Provide** ``--keys`` keys, each from a random node.
3. **Find**: ``--finds`` ``find_providers`` calls from random nodes (not the provider) for
   random provided keys, ``--find-concurrency`` at a time.

Prints one JSON line, before tearing the mesh down: find success, DHT queries per find, find
latency p50/p95 (virtual s), how many of each key's true 20 closest nodes hold its provider
record, routing-table sizes, CPU seconds per phase and in all (hosts' start included), virtual
seconds, peak RSS.

Usage: ``python -m simnet.experiments.dht_lookup N SEED --fixed|--stock [options]``.

Measured (seed 1, plaintext + mplex, 10 keys, 100 finds; "holders" = how many of a key's true
20 closest nodes got its provider record; latencies in virtual seconds):

======  =====  ============  ===========  ===========  =======  ======
N       mode   find success  queries/fnd  find p50/95  holders  CPU s
======  =====  ============  ===========  ===========  =======  ======
100     stock  100 %         44.5         2.32 / 3.10  9.4      74
100     fixed  100 %         23.7         0.84 / 1.20  18.9     74
300     stock  100 %         68.9         2.89 / 5.23  5.7      553
300     fixed  100 %         27.9         1.08 / 1.35  19.8     701
1000    fixed  100 %         32.8         1.24 / 1.50  20.0     706
======  =====  ============  ===========  ===========  =======  ======
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import hashlib
import json
import resource
import statistics
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.lowlevel
from libp2p.abc import IHost, INetStream
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service

from protocols.libp2p_fixes.kad import apply_kad_fixes
from simnet.clock import key_pair_from, libp2p_virtual_time, mock_clock, seeded_random
from simnet.hosts import SimHostOptions, running_sim_host
from simnet.net import SimNetwork, SimNode

__all__ = ["Experiment", "main", "run"]

#: DHT streams opened by the current task and its children (one counter per find).
_QUERIES: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "dht_queries", default=None
)


def pair_latency(a: str, b: str) -> float:
    """One-way latency per unordered pair of addresses: 12.5-37.5 ms, fixed by a hash."""
    low, high = sorted((a, b))
    return 0.0125 + (zlib.crc32(f"{low}|{high}".encode()) % 10_000) / 10_000 * 0.025


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _count_kad_streams(host: IHost) -> None:
    """Count the DHT streams ``host`` opens into the current task's counter, if any."""
    original = host.new_stream

    async def new_stream(peer_id: ID, protocol_ids: Sequence[Any]) -> INetStream:
        counter = _QUERIES.get()
        if counter is not None and PROTOCOL_ID in protocol_ids:
            counter[0] += 1
        return await original(peer_id, list(protocol_ids))

    host.new_stream = new_stream  # type: ignore[method-assign]


@dataclass
class Experiment:
    """One run's settings and what it measured."""

    n: int
    seed: int
    fixed: bool
    keys: int = 10
    finds: int = 100
    join_concurrency: int = 50
    find_concurrency: int = 10
    security: str = "plaintext"
    muxer: str = "mplex"
    results: dict[str, Any] = field(default_factory=dict)


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[Any, float, int]:
    """Run ``fn`` with its own DHT-stream counter; (result, virtual seconds, streams)."""
    counter = [0]
    token = _QUERIES.set(counter)
    try:
        started = trio.current_time()
        result = await fn()
        return result, trio.current_time() - started, counter[0]
    finally:
        _QUERIES.reset(token)


async def run(exp: Experiment) -> dict[str, Any]:
    """Run the scenario in the current trio run (under a mock clock); return the metrics."""
    cpu_start = time.process_time()
    rng = seeded_random(exp.seed, "scenario")
    keys_rng = seeded_random(exp.seed, "keys")
    net = SimNetwork(latency=pair_latency, seed=exp.seed)
    options = SimHostOptions(security=exp.security, muxer=exp.muxer)
    nodes: list[SimNode] = [net.add_node() for _ in range(exp.n)]
    hosts: list[IHost] = []
    dhts: list[KadDHT] = []
    out: dict[str, Any] = {"n": exp.n, "seed": exp.seed, "mode": "fixed" if exp.fixed else "stock"}
    async with AsyncExitStack() as stack:
        for node in nodes:
            host = await stack.enter_async_context(
                running_sim_host(net, node, key_pair_from(keys_rng), options)
            )
            _count_kad_streams(host)
            dht = KadDHT(host, DHTMode.SERVER)
            if exp.fixed:
                apply_kad_fixes(dht)
            await stack.enter_async_context(background_trio_service(dht))
            hosts.append(host)
            dhts.append(dht)

        # -- join -----------------------------------------------------------------------
        joined = [0]
        join_ok = [0]
        join_times: list[float] = []
        join_queries: list[int] = []
        limiter = trio.CapacityLimiter(exp.join_concurrency)
        cpu = time.process_time()
        virtual = trio.current_time()

        async def join(i: int) -> None:
            async with limiter:
                target = joined[rng.randrange(len(joined))]
                host, dht = hosts[i], dhts[i]

                async def go() -> bool:
                    info = PeerInfo(hosts[target].get_id(), [nodes[target].listen_addr()])
                    try:
                        with trio.fail_after(30):
                            await host.connect(info)
                    except Exception:  # a failed join is a measured outcome
                        return False
                    await dht.add_peer(info.peer_id)
                    found = await dht.peer_routing.find_closest_peers_network(
                        host.get_id().to_bytes()
                    )
                    for peer in found:
                        await dht.add_peer(peer)
                    return True

                ok, seconds, queries = await _timed(go)
                join_ok[0] += ok
                join_times.append(seconds)
                join_queries.append(queries)
                joined.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(1, exp.n):
                nursery.start_soon(join, i)
                await trio.lowlevel.checkpoint()  # start in order, so earlier nodes join first
        out["join_ok"] = join_ok[0] + 1
        out["join_p50"] = _percentile(join_times, 0.5)
        out["join_queries_mean"] = statistics.fmean(join_queries) if join_queries else 0
        out["join_cpu_s"] = round(time.process_time() - cpu, 1)
        out["join_virtual_s"] = round(trio.current_time() - virtual, 2)

        # -- provide --------------------------------------------------------------------
        cpu = time.process_time()
        ids = [host.get_id() for host in hosts]
        keys: list[tuple[str, bytes, int]] = []
        provide_times: list[float] = []
        for k in range(exp.keys):
            digest = hashlib.sha256(f"dht-lookup/{exp.seed}/{k}".encode()).digest()
            key_bytes = b"\x12\x20" + digest
            provider = rng.randrange(exp.n)
            keys.append((key_bytes.hex(), key_bytes, provider))
            _, seconds, _ = await _timed(functools.partial(dhts[provider].provide, key_bytes.hex()))
            provide_times.append(seconds)
        holders_in_top: list[int] = []
        for _, key_bytes, _ in keys:
            target = _point(key_bytes)
            ranked = sorted(range(exp.n), key=lambda i: target ^ _point(ids[i].to_bytes()))
            holders = {i for i in range(exp.n) if dhts[i].provider_store.get_providers(key_bytes)}
            holders_in_top.append(len(holders & set(ranked[:20])))
        out["provide_p50"] = _percentile(provide_times, 0.5)
        out["holders_in_true_top20_mean"] = statistics.fmean(holders_in_top)
        out["provide_cpu_s"] = round(time.process_time() - cpu, 1)

        # -- find -------------------------------------------------------------------------
        cpu = time.process_time()
        found_ok = [0]
        find_times: list[float] = []
        find_queries: list[int] = []
        find_limiter = trio.CapacityLimiter(exp.find_concurrency)

        async def find(key_hex: str, provider: int, finder: int) -> None:
            async with find_limiter:
                result, seconds, queries = await _timed(
                    lambda: dhts[finder].find_providers(key_hex)
                )
                found_ok[0] += any(info.peer_id == ids[provider] for info in result)
                find_times.append(seconds)
                find_queries.append(queries)

        async with trio.open_nursery() as nursery:
            for _ in range(exp.finds):
                key_hex, _, provider = keys[rng.randrange(len(keys))]
                finder = rng.choice([i for i in range(exp.n) if i != provider])
                nursery.start_soon(find, key_hex, provider, finder)
        out["find_success"] = found_ok[0] / exp.finds
        out["queries_per_find"] = statistics.fmean(find_queries)
        out["find_p50"] = _percentile(find_times, 0.5)
        out["find_p95"] = _percentile(find_times, 0.95)
        out["find_cpu_s"] = round(time.process_time() - cpu, 1)
        sizes = [dht.get_routing_table_size() for dht in dhts]
        out["rt_mean"] = statistics.fmean(sizes)
        out["dials"] = sum(node.counters.dials_out for node in nodes)
        out["virtual_s"] = round(trio.current_time(), 2)
        out["cpu_s"] = round(time.process_time() - cpu_start, 1)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        # Reported before the mesh is torn down: closing thousands of connections costs
        # minutes of CPU and measures nothing about lookups.
        print(json.dumps(out), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run one experiment, print its metrics as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("n", type=int, help="number of nodes")
    parser.add_argument("seed", type=int)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--fixed", action="store_true", help="apply protocols.libp2p_fixes.kad to every DHT"
    )
    mode.add_argument("--stock", action="store_true", help="py-libp2p's own lookups")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--finds", type=int, default=100)
    parser.add_argument("--join-concurrency", type=int, default=50)
    parser.add_argument("--find-concurrency", type=int, default=10)
    parser.add_argument("--security", default="plaintext", choices=("plaintext", "noise"))
    parser.add_argument("--muxer", default="mplex", choices=("mplex", "yamux"))
    args = parser.parse_args(argv)
    exp = Experiment(
        n=args.n,
        seed=args.seed,
        fixed=args.fixed,
        keys=args.keys,
        finds=args.finds,
        join_concurrency=args.join_concurrency,
        find_concurrency=args.find_concurrency,
        security=args.security,
        muxer=args.muxer,
    )
    with libp2p_virtual_time(epoch=1_700_000_000.0):
        trio.run(run, exp, clock=mock_clock())
    return 0


if __name__ == "__main__":
    sys.exit(main())
