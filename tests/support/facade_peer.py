"""A node in another process driven through a facade: ``python -m tests.support.facade_peer
{aio|sync} {sub|pub} [peer-addr] [count]``.

``sub`` listens on 127.0.0.1, prints ``{"addr": ...}``, receives ``count`` ``Sample`` messages on
``facade.test`` and prints ``{"received": n, "last": seq}``; ``pub`` connects to ``peer-addr``,
waits for the interest and sends ``count`` messages.  Every wait is bounded (30 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from dndm_p2p import NodeConfig, aio, sync
from tests.proto.messages_pb2 import Sample

WAIT = 30.0
CONFIG = NodeConfig(listen=("/ip4/127.0.0.1/tcp/0",))


def emit(record: dict[str, object]) -> None:
    """Print one JSON line and flush it."""
    print(json.dumps(record), flush=True)


async def aio_main(role: str, addr: str, count: int) -> None:
    """The asyncio side: one node, one handle."""
    async with aio.Node(CONFIG) as node:
        if role == "sub":
            async with node.subscribe("facade.test", Sample, reliable=True) as samples:
                emit({"addr": node.addrs[0]})
                seqs = [(await asyncio.wait_for(samples.receive(), WAIT)).seq for _ in range(count)]
                emit({"received": len(seqs), "last": seqs[-1]})
        else:
            await asyncio.wait_for(node.connect(addr), WAIT)
            async with node.publish("facade.test", Sample) as out:
                await asyncio.wait_for(out.wait_interest(), WAIT)
                for seq in range(1, count + 1):
                    await out.send(Sample(seq=seq))
                emit({"sent": count})
                await asyncio.sleep(1.0)


def sync_main(role: str, addr: str, count: int) -> None:
    """The threaded side: one node, one handle."""
    with sync.Node(CONFIG) as node:
        if role == "sub":
            with node.subscribe("facade.test", Sample, reliable=True) as samples:
                emit({"addr": node.addrs[0]})
                seqs = [samples.receive(timeout=WAIT).seq for _ in range(count)]
                emit({"received": len(seqs), "last": seqs[-1]})
        else:
            node.connect(addr, timeout=WAIT)
            with node.publish("facade.test", Sample) as out:
                out.wait_interest(timeout=WAIT)
                for seq in range(1, count + 1):
                    out.send(Sample(seq=seq), timeout=WAIT)
                emit({"sent": count})
                time.sleep(1.0)


def main() -> None:
    """Parse the arguments and run one side."""
    facade, role = sys.argv[1], sys.argv[2]
    addr = sys.argv[3] if len(sys.argv) > 3 else ""
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    if facade == "aio":
        asyncio.run(aio_main(role, addr, count))
    else:
        sync_main(role, addr, count)


if __name__ == "__main__":
    main()
