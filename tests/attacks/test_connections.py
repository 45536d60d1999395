"""Finding 7: connection slots, dials and request floods, attacked from other OS processes.

* One process holds 1,000 silent connection attempts from 127.0.1.2 (all of 127.0.0.0/8 is
  loopback on Linux; it is outside 127.0.0.1's /24): a legitimate peer on 127.0.0.1 still
  connects and links, and the refusals are counted.
* Twelve plain py-libp2p peers (no DNDM) against ten slots, four of them for such peers: the
  oldest are closed, and a DNDM peer still links.
* A node's gossip adverts, relayed by a bootstrap node, claim addresses it does not own
  (listeners on 127.0.0.3 counting connections), a new one in each of 20 adverts: the victim
  dials no more than the advertiser's dial rate allows, and the refusals are counted.
* A FIND_NODE flood: the answers are bounded by the per-peer rate, the refusals are counted,
  and another peer's lookup is still answered.

Each test prints its figures (``-s`` shows them) before checking them.
"""

from __future__ import annotations

import socket

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes

from dht.config import DhtConfig
from dndm_p2p.config import ConnectionLimits, GossipConfig, NodeConfig
from dndm_p2p.host.build import connect, running_host
from dndm_p2p.node.node import Node
from tests.proto.messages_pb2 import Foo
from tests.support.attackers.runner import attacker
from tests.support.nodes import FAST, eventually, receive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _host_port(addr: str) -> str:
    parts = addr.split("/")
    return f"{parts[2]}:{parts[4]}"


async def test_a_legitimate_peer_links_while_one_process_holds_1000_connection_attempts() -> None:
    async with Node(NodeConfig(name="victim", **FAST)) as victim:
        target = _host_port(victim.addrs[0])
        async with attacker(
            "tests.support.attackers.connections",
            "hold",
            "--target",
            target,
            "--source",
            "127.0.1.2",
            "--count",
            "1000",
            "--seconds",
            "60",
            "--ramp",
            "3",
        ) as hold:
            await hold.event("holding", seconds=30)
            async with Node(NodeConfig(name="legit", **FAST)) as legit:
                interest = victim.subscribe("legit.temp", Foo)
                intent = legit.publish("legit.temp", Foo)
                started = trio.current_time()
                with trio.fail_after(20):
                    await legit.connect(victim.addrs[0])
                    await intent.wait_interest()
                linked_after = trio.current_time() - started
                await intent.send(Foo(text="through"))
                got = await receive(interest, 1)
                counters = victim.counters()
                print(f"linked in {linked_after:.2f} s under the hold; counters {counters}")
                intent.close()
                interest.close()
        assert [m.text for m in got] == ["through"]
        refused = counters["connections.refused_pending_per_ip"]
        assert refused > 0
        assert counters["connections.pending"] <= victim.config.connection_limits.max_pending


ADVERTS = 20


async def test_peers_that_never_speak_dndm_cannot_take_the_slots_of_a_dndm_peer() -> None:
    limits = ConnectionLimits(max_foreign=4)
    config = NodeConfig(name="victim", max_connections=10, connection_limits=limits, **FAST)
    async with (
        Node(config) as victim,
        attacker(
            "tests.support.attackers.connections",
            "foreign",
            "--target",
            victim.addrs[0],
            "--count",
            "12",
            "--seconds",
            "60",
        ) as squatters,
    ):
        await squatters.event("connected", seconds=60)
        await eventually(lambda: victim.counters()["connections.trimmed_foreign"] > 0)
        async with Node(NodeConfig(name="legit", **FAST)) as legit:
            interest = victim.subscribe("legit.slots", Foo)
            intent = legit.publish("legit.slots", Foo)
            with trio.fail_after(20):
                await legit.connect(victim.addrs[0])
                await intent.wait_interest()
            await intent.send(Foo(text="room"))
            got = await receive(interest, 1)
            counters = victim.counters()
            intent.close()
            interest.close()
    print(f"12 non-DNDM peers against 10 slots (4 for them): counters {counters}")
    assert [m.text for m in got] == ["room"]
    assert counters["connections.foreign"] <= limits.max_foreign
    assert counters["connections.trimmed_foreign"] > 0


class ConnectionCounter:
    """TCP listeners on 127.0.0.3 that count and close every connection they are sent."""

    def __init__(self, ports: int) -> None:
        self.count = 0
        self.ports: list[int] = []
        self._wanted = ports

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = []
        for _ in range(self._wanted):
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            await sock.bind(("127.0.0.3", 0))
            sock.listen(64)
            self.ports.append(sock.getsockname()[1])
            listeners.append(trio.SocketListener(sock))
        task_status.started()
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._count, listener)

    async def _count(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                self.count += 1
                await stream.aclose()


async def test_adverts_naming_addresses_the_advertiser_does_not_own_are_not_amplified() -> None:
    gossip = GossipConfig(min_interval=0.05)
    async with trio.open_nursery() as nursery:
        counter = ConnectionCounter(ADVERTS)
        await nursery.start(counter.serve)
        boot_config = NodeConfig(name="boot", gossip=GossipConfig(relay_all=True), **FAST)
        async with Node(boot_config) as boot:
            victim_config = NodeConfig(
                name="victim", gossip=gossip, bootstrap=(boot.addrs[0],), **FAST
            )
            async with Node(victim_config) as victim:
                interest = victim.subscribe("refl.temp", Foo)
                async with attacker(
                    "tests.support.attackers.connections",
                    "reflect",
                    "--bootstrap",
                    boot.addrs[0],
                    "--claim",
                    "127.0.0.3",
                    "--ports",
                    ",".join(map(str, counter.ports)),
                    "--route",
                    "refl.temp",
                ) as reflector:
                    started = trio.current_time()
                    await reflector.event("done", seconds=60)
                    elapsed = trio.current_time() - started
                    with trio.move_on_after(3):  # the last adverts arrive and are acted on
                        while counter.count < ADVERTS:  # noqa: ASYNC110 (a count, no event)
                            await trio.sleep(0.1)
                    counters = victim.counters()
                interest.close()
        nursery.cancel_scope.cancel()
    print(
        f"{ADVERTS} adverts in {elapsed:.1f} s: {counter.count} connections to the claimed "
        f"addresses; counters {counters}"
    )
    limits = victim_config.dial_limits
    assert counter.count <= limits.source_burst + limits.source_rate * (elapsed + 3) + 1
    assert counters["discovery.dial_refused_rate"] >= 1


async def _find_node(host: object, peer: ID) -> bytes:
    """One FIND_NODE request from ``host`` to ``peer``; the raw answer."""
    new_stream = getattr(host, "new_stream")  # noqa: B009 (IHost, untyped here)
    stream = await new_stream(peer, [TProtocol(PROTOCOL_ID)])
    key = ID.from_pubkey(create_new_key_pair().public_key).to_bytes()
    request = Message(type=Message.MessageType.FIND_NODE, key=key)
    await stream.write(encode_varint_prefixed(request.SerializeToString()))
    answer: bytes = await read_varint_prefixed_bytes(stream)
    await stream.close()
    return answer


async def test_a_find_node_flood_is_answered_at_the_peer_rate_and_others_are_still_served() -> None:
    seconds = 10.0
    dht = DhtConfig(requests_per_second=20.0, request_burst=100)
    async with Node(NodeConfig(name="victim", dht=dht, **FAST)) as victim:
        async with attacker(
            "tests.support.attackers.connections",
            "find-node-flood",
            "--target",
            victim.addrs[0],
            "--seconds",
            str(seconds),
            "--streams",
            "4",
        ) as flood:
            async with running_host(create_new_key_pair()) as legit:
                peer = await connect(legit, victim.addrs[0])
                await eventually(lambda: victim.counters().get("dht.refused_requests", 0) > 0)
                with trio.fail_after(10):
                    answer = await _find_node(legit, peer)
            done = await flood.event("done", seconds=seconds + 30)
        counters = victim.counters()
    print(f"flood: {done}; counters {counters}")
    parsed = Message.FromString(answer)
    assert parsed.type == Message.MessageType.FIND_NODE
    limit = dht.request_burst + dht.requests_per_second * (seconds + 5)
    assert done["answers"] <= limit
    assert counters["dht.refused_requests"] > 0
