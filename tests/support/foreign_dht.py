"""A libp2p node that is not a DNDM node: a py-libp2p kad-dht server, standing in for a go or js
bootstrap node.  ``python -m tests.support.foreign_dht``.

It listens on 127.0.0.1 (Noise, yamux), serves the Kademlia DHT (``/ipfs/kad/1.0.0``) with
py-libp2p's own ``KadDHT`` and nothing else (no DNDM protocol, no fix of ours), prints
``{"event": "listening", "peer": ID, "addrs": [...]}`` and serves until stdin ends or says
``{"op": "exit"}``; ``{"op": "table"}`` prints ``{"event": "table", "peers": [...]}``, the
peers in its routing table.
"""

from __future__ import annotations

import json
import sys

import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.tools.anyio_service import background_trio_service

from dndm_p2p.host.build import HostConfig, listen_addrs, running_host
from dndm_p2p.host.identity import generate_identity


def emit(record: dict[str, object]) -> None:
    """Print one JSON line and flush it."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def amain() -> None:
    """Serve the DHT until told to stop."""
    async with running_host(generate_identity(), HostConfig()) as host:
        kad = KadDHT(host, DHTMode.SERVER)
        async with background_trio_service(kad):
            emit(
                {
                    "event": "listening",
                    "peer": str(host.get_id()),
                    "addrs": [str(addr) for addr in listen_addrs(host)],
                }
            )
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)  # type: ignore[call-arg]
                command = json.loads(line) if line.strip() else {}
                if not line or command.get("op") == "exit":
                    break
                if command.get("op") == "table":
                    peers = kad.routing_table.get_peer_ids()
                    emit({"event": "table", "peers": [str(peer) for peer in peers]})
    emit({"event": "exiting"})


if __name__ == "__main__":
    trio.run(amain)
