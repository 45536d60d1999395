"""NAT traversal on loopback: relays, relayed dialling, hole punching (trivially direct here),
the session's move to the direct connection, reservations moving between relays, settings.

Real NATs are in ``tests/nat/test_nat_lab.py``; py-libp2p's defects in
``tests/fixes/test_nat.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from dndm_p2p import Node, NodeConfig
from dndm_p2p.errors import ConfigError
from dndm_p2p.host.identity import generate_identity, peer_id_of
from nat import NatConfig
from protocols.addrs import circuit_peer, is_circuit, is_public, same_private_network, without_peer
from tests.proto.messages_pb2 import Sample

RELAY = NatConfig(relay_service=True, relay_client="never", autonat_confirmations=1)


def _private(**options: Any) -> NatConfig:
    return NatConfig(**{"relay_client": "always", "autonat_confirmations": 1, **options})


@asynccontextmanager
async def _nodes(*configs: NodeConfig) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Node(config)) for config in configs]


async def _circuit(node: Node) -> str:
    assert node.nat is not None
    while not node.nat.relay.circuit_addrs():
        await node.nat.changed.wait()
    return next(a for a in node.addrs if "/p2p-circuit/" in a)


def _conn_addrs(node: Node, peer: Node) -> list[list[str]]:
    conns = node.host.get_network().get_connections(ID.from_base58(peer.peer_id))
    return [[str(a) for a in c.get_transport_addresses()] for c in conns]


async def test_a_relayed_link_moves_to_the_direct_connection_without_losing_a_message() -> None:
    count = 600
    with trio.fail_after(60):
        async with _nodes(NodeConfig(name="relay", nat=RELAY)) as (relay,):
            boot = (relay.addrs[0],)
            config = NodeConfig(bootstrap=boot, nat=_private(punch_delay=0.3))
            async with (
                _nodes(config, config) as (a, b),
                a.publish("x.y", Sample) as pub,
                b.events() as events,
            ):
                circuit = await _circuit(a)
                assert circuit.startswith(f"{relay.addrs[0]}/p2p-circuit/p2p/{a.peer_id}")
                assert await b.connect(circuit) == a.peer_id
                assert all("/p2p-circuit/" in x for c in _conn_addrs(b, a) for x in c)
                got: list[int] = []
                moved_at: list[int] = []

                async def watch() -> None:
                    async for event in events:
                        if event.kind == "peer_moved":
                            moved_at.append(len(got))

                async def send() -> None:
                    for seq in range(count):
                        await pub.send(Sample(seq=seq))
                        if seq % 5 == 0:
                            await trio.sleep(0.01)

                async with (
                    b.subscribe("x.y", Sample, reliable=True) as sub,
                    trio.open_nursery() as nursery,
                ):
                    await pub.wait_interest()
                    nursery.start_soon(watch)
                    nursery.start_soon(send)
                    while len(got) < count:
                        got.append((await sub.receive()).seq)
                    nursery.cancel_scope.cancel()
                assert got == list(range(count))
                assert len(moved_at) == 1
                assert 0 < moved_at[0] < count, "the move did not happen mid-stream"
                conns = _conn_addrs(b, a)
                assert conns, "no connection left"
                assert not any("/p2p-circuit/" in x for c in conns for x in c), conns
                assert a.nat is not None
                assert b.nat is not None
                assert a.nat.metrics.punch_successes + b.nat.metrics.punch_successes == 1
                assert len(b.nat.metrics.direct_times) == 1
                assert b.nat.metrics.relayed_dials == 1


async def test_both_sides_punching_at_once_end_with_one_direct_connection() -> None:
    with trio.fail_after(60):
        async with _nodes(NodeConfig(nat=RELAY)) as (relay,):
            config = NodeConfig(bootstrap=(relay.addrs[0],), nat=_private(hole_punching=False))
            async with _nodes(config, config) as (a, b), b.events() as events:
                await b.connect(await _circuit(a))
                assert a.nat is not None
                assert b.nat is not None
                results: list[bool] = []

                async def punch(node: Node, peer: Node) -> None:
                    assert node.nat is not None
                    results.append(await node.nat.punch(ID.from_base58(peer.peer_id)))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(punch, a, b)
                    nursery.start_soon(punch, b, a)
                assert results == [True, True]
                async for event in events:
                    if event.kind == "peer_moved":
                        break
                for _ in range(100):  # the relayed connection closes after a short grace
                    if not any("/p2p-circuit/" in x for c in _conn_addrs(b, a) for x in c):
                        break
                    await trio.sleep(0.05)
                conns = _conn_addrs(b, a)
                assert conns, "no connection left"
                assert not any("/p2p-circuit/" in x for c in conns for x in c), conns
                assert a.nat.metrics.punch_attempts + b.nat.metrics.punch_attempts == 2


async def _run_until(config: NodeConfig, stop: trio.Event, *, task_status: Any) -> None:
    async with Node(config) as node:
        task_status.started(node)
        await stop.wait()


async def test_a_reservation_moves_to_another_relay_when_its_relay_goes() -> None:
    with trio.fail_after(60):
        async with _nodes(NodeConfig(nat=RELAY)) as (second,), trio.open_nursery() as nursery:
            stop_first = trio.Event()
            first: Node = await nursery.start(_run_until, NodeConfig(nat=RELAY), stop_first)
            relays = (first.addrs[0], second.addrs[0])
            async with Node(NodeConfig(nat=_private(relays=relays))) as a, a.events() as events:
                assert (await _circuit(a)).startswith(first.addrs[0])
                stop_first.set()
                kinds = []
                async for event in events:
                    kinds.append(event.kind)
                    if event.kind == "reserved" and second.peer_id in event.detail:
                        break
                assert "reservation_lost" in kinds
                assert (await _circuit(a)).startswith(second.addrs[0])
                assert a.nat is not None
                assert a.nat.metrics.relay_switches == 1
                assert a.nat.metrics.reservations_active == 1


async def test_host_addrs_carry_relayed_addresses_whole() -> None:
    with trio.fail_after(30):
        async with _nodes(NodeConfig(nat=RELAY)) as (relay,):
            config = NodeConfig(bootstrap=(relay.addrs[0],), nat=_private())
            async with Node(config) as a:
                circuit = await _circuit(a)
                assert circuit in [str(x) for x in a.host.get_addrs()]
                advertised = [str(x) for x in a.advertised_addrs()]
                assert circuit.removesuffix(f"/p2p/{a.peer_id}") in advertised


async def test_a_relayed_address_needs_nat_traversal() -> None:
    with trio.fail_after(30):
        async with _nodes(NodeConfig(nat=RELAY), NodeConfig()) as (relay, plain):
            target = f"{relay.addrs[0]}/p2p-circuit/p2p/{relay.peer_id}"
            with pytest.raises(ConfigError, match="does not use relays"):
                await plain.connect(target)


async def test_reachability_is_public_where_dial_backs_succeed() -> None:
    with trio.fail_after(30):
        async with _nodes(NodeConfig(nat=RELAY)) as (relay,):
            config = NodeConfig(bootstrap=(relay.addrs[0],), nat=_private(relay_client="never"))
            async with Node(config) as a, a.events() as events:
                assert a.nat is not None
                async for event in events:
                    if event.kind == "reachability":
                        break
                assert event.detail == "public" == a.nat.status
                assert a.nat.metrics.reachability == "public"
                assert [str(x) for x in a.nat.reachability.confirmed] == [
                    str(without_peer(a.addrs[0]))
                ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"relays": "/ip4/1.2.3.4/tcp/1"}, "sequence"),
        ({"relays": ("/ip4/1.2.3.4/tcp/1",)}, "no /p2p"),
        ({"relay_client": "sometimes"}, "relay_client"),
        ({"autonat_confirmations": 0}, "autonat_confirmations"),
        ({"renew_interval": 0}, "renew_interval"),
        ({"punch_delay": -1}, "punch_delay"),
        ({"renew_interval": 4000.0}, "shorter"),
    ],
)
def test_nat_config_rejects_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NatConfig(**options)
    with pytest.raises(ConfigError, match="NatConfig"):
        NodeConfig(nat="yes")  # type: ignore[arg-type]


def test_address_classes() -> None:
    assert is_public("/ip4/198.18.1.2/tcp/4001")
    assert is_public("/ip4/8.8.8.8/tcp/1")
    for private in ("/ip4/10.1.0.2/tcp/1", "/ip4/127.0.0.1/tcp/1", "/ip4/100.64.0.1/tcp/1"):
        assert not is_public(private)
    relay_id, dest_id = (str(peer_id_of(generate_identity())) for _ in range(2))
    relay = f"/ip4/198.18.0.2/tcp/4001/p2p/{relay_id}"
    assert not is_public(f"{relay}/p2p-circuit")
    assert is_circuit(f"{relay}/p2p-circuit")
    assert circuit_peer(f"{relay}/p2p-circuit/p2p/{dest_id}") == (relay_id, dest_id)
    assert same_private_network("/ip4/10.1.0.7/tcp/1", [Multiaddr("/ip4/10.1.0.2/tcp/4001")])
    assert not same_private_network("/ip4/10.2.0.2/tcp/1", ["/ip4/10.1.0.2/tcp/4001"])


class _FakeGateway:
    """A UPnP IGD stand-in (miniupnpc's interface): records mappings."""

    lanaddr = "127.0.0.1"

    def __init__(self) -> None:
        self.mappings: dict[int, tuple[str, int]] = {}

    def discover(self) -> int:
        return 1

    def selectigd(self) -> None:
        return None

    def externalipaddress(self) -> str:
        return "198.18.7.7"

    def addportmapping(self, port: int, proto: str, ip: str, inner: int, *_: str) -> bool:
        self.mappings[port] = (ip, inner)
        return True

    def deleteportmapping(self, port: int, proto: str) -> bool:
        return self.mappings.pop(port, None) is not None


async def test_upnp_maps_the_listen_port_while_running_and_removes_it_at_shutdown() -> None:
    from nat.metrics import NatMetrics
    from nat.upnp import UpnpMapper

    gateway = _FakeGateway()
    with trio.fail_after(20):
        async with Node(NodeConfig()) as node, trio.open_nursery() as nursery:
            metrics = NatMetrics()
            events: list[tuple[str, str]] = []
            mapper = UpnpMapper(
                node.host, metrics, lambda k, d: events.append((k, d)), lambda: gateway
            )
            scope = trio.CancelScope()

            async def run() -> None:
                with scope:
                    await mapper.run()

            nursery.start_soon(run)
            port = int(node.addrs[0].split("/")[4])
            for _ in range(100):
                if mapper.mapped:
                    break
                await trio.sleep(0.02)
            assert gateway.mappings == {port: ("127.0.0.1", port)}
            assert [str(a) for a in mapper.mapped] == [f"/ip4/198.18.7.7/tcp/{port}"]
            assert metrics.upnp_mapped
            assert events[0][0] == "upnp_mapped"
            scope.cancel()
        assert gateway.mappings == {}
        assert not metrics.upnp_mapped
