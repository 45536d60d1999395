"""protocols.libp2p_fixes.pubsub: py-libp2p 0.8.1's Pubsub and GossipSub bugs, shown on the
stock code, then fixed.  127.0.0.1 only.

When a "stock" assertion fails after a py-libp2p upgrade, that bug is gone: delete the test and
the workaround together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes

from dndm_p2p.discovery.gossip import GOSSIP_PROTOCOLS, gossipsub_options
from dndm_p2p.discovery.namespaces import topic_for
from dndm_p2p.host.build import build_host, connect, listen_addrs, running_host
from dndm_p2p.host.identity import generate_identity, peer_id_of
from protocols.libp2p_fixes.pubsub import FixedPubsub, FloodPublishGossipSub

TOPIC = topic_for("robot")


@asynccontextmanager
async def plain_peer(*, fixed: bool = False) -> AsyncIterator[tuple[IHost, Pubsub]]:
    """A py-libp2p host with stock Pubsub (or, with ``fixed``, :class:`FixedPubsub`) and
    GossipSub, StrictSign, subscribed to TOPIC.  The stock peer's handlers run unguarded, as
    py-libp2p runs them (see ``guard_stream_handlers``)."""
    async with running_host(generate_identity()) as host:
        if not fixed:
            host.get_network().set_stream_handler(host._swarm_stream_handler)  # type: ignore[attr-defined]
        router = GossipSub(
            protocols=list(GOSSIP_PROTOCOLS), degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=1,
        )  # fmt: skip
        pubsub = (
            FixedPubsub(host, router, on_malformed_rpc=malformed.append)
            if fixed
            else Pubsub(host, router, strict_signing=True)
        )
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe(TOPIC)
            yield host, pubsub


#: Peers whose malformed RPC a ``plain_peer(fixed=True)`` reported, in order.
malformed: list[ID] = []


async def send_garbage_rpc(sender: IHost, target: IHost) -> None:
    """Open a pubsub stream to ``target`` and write one length-prefixed frame of non-protobuf."""
    stream = await sender.new_stream(target.get_id(), [GOSSIP_PROTOCOLS[0]])
    await stream.write(encode_varint_prefixed(b"\xff\xff\xff not an RPC"))


def test_py_libp2p_adaptive_gossip_slows_the_heartbeat() -> None:
    """py-libp2p bug: "adaptive gossip" turns a 1 s heartbeat into 60 s in a small mesh."""
    stock = GossipSub(**{**gossipsub_options(1.0), "adaptive_gossip_enabled": True})
    stock.network_health_score = 0.5  # a topic mesh smaller than the degree gives about this
    stock._adapt_gossip_parameters()
    assert stock.heartbeat_interval == 60
    ours = GossipSub(**gossipsub_options(1.0))
    ours.network_health_score = 0.5
    ours._adapt_gossip_parameters()
    assert ours.heartbeat_interval == 1.0


def test_py_libp2p_sends_our_own_messages_only_to_mesh_peers() -> None:
    """py-libp2p gap: with the topic mesh not yet formed, our own message goes to nobody;
    ours, like go-libp2p's flood publishing, sends it to every subscribed peer."""
    host = build_host(generate_identity())
    me, subscriber = host.get_id(), peer_id_of(generate_identity())
    sent_to = {}
    for name, router_class in (("stock", GossipSub), ("ours", FloodPublishGossipSub)):
        router = router_class(**gossipsub_options(1.0))
        pubsub = Pubsub(host, router)
        pubsub.peer_topics[TOPIC] = {subscriber}  # it told us it subscribed
        router.peer_protocol[subscriber] = GOSSIP_PROTOCOLS[0]
        router.mesh[TOPIC] = set()  # we joined; no GRAFT yet
        sent_to[name] = set(router._get_peers_to_send([TOPIC], me, me))
    assert sent_to == {"stock": set(), "ours": {subscriber}}


def test_py_libp2p_pubsub_reuses_sequence_numbers_after_a_restart() -> None:
    """py-libp2p bug: sequence numbers start from the clock in seconds, so a pubsub restarted
    within seconds reuses those of its predecessor, and peers drop its messages as seen."""
    host = build_host(generate_identity())
    first = Pubsub(host, GossipSub(**gossipsub_options(1.0)))
    used = {first._next_seqno() for _ in range(5)}
    second = Pubsub(host, GossipSub(**gossipsub_options(1.0)))
    assert second._next_seqno() in used
    ours = FixedPubsub(host, GossipSub(**gossipsub_options(1.0)))
    assert int.from_bytes(ours._next_seqno(), "big") > max(int.from_bytes(s, "big") for s in used)


async def test_py_libp2p_host_dies_of_one_malformed_pubsub_rpc() -> None:
    """py-libp2p bug: the stream handler lets DecodeError out, and the whole host fails."""

    async def attack_a_plain_peer() -> None:
        async with plain_peer() as (target, _), running_host(generate_identity()) as evil:
            await connect(evil, listen_addrs(target)[0])
            await send_garbage_rpc(evil, target)
            await trio.sleep_forever()  # ended by the crash

    with trio.fail_after(20), pytest.raises(BaseExceptionGroup) as caught:
        await attack_a_plain_peer()
    assert caught.value.subgroup(DecodeError) is not None


async def test_fixed_pubsub_resets_the_stream_of_a_malformed_rpc_and_lives_on() -> None:
    malformed.clear()
    with trio.fail_after(20):
        async with plain_peer(fixed=True) as (target, _), running_host(generate_identity()) as evil:
            await connect(evil, listen_addrs(target)[0])
            await send_garbage_rpc(evil, target)
            while not malformed:  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert malformed == [evil.get_id()]
            # The host still serves: a new pubsub stream from the same peer is accepted.
            stream = await evil.new_stream(target.get_id(), [GOSSIP_PROTOCOLS[0]])
            await stream.reset()


async def test_concurrent_rpc_writes_to_one_stream_stay_whole() -> None:
    """py-libp2p bug: two large RPCs written at once to a stream are interleaved chunk by chunk
    (the replay of recent messages writes beside the send queue); our Pubsub writes one at a
    time."""
    protocol = TProtocol("/dndm-test/rpcs/1.0.0")
    big = [rpc_pb2.RPC(publish=[rpc_pb2.Message(data=bytes([n]) * 150_000)]) for n in (1, 2)]

    async def whole_rpcs(writer: Pubsub) -> list[bool]:
        parsed: list[bool] = []
        done = trio.Event()

        async def handler(stream: INetStream) -> None:
            for _ in big:
                data = await read_varint_prefixed_bytes(stream)
                try:
                    rpc = rpc_pb2.RPC.FromString(data)
                except DecodeError:
                    parsed.append(False)
                else:
                    parsed.append(rpc in big)
            done.set()

        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            b.set_stream_handler(protocol, handler)
            await connect(a, listen_addrs(b)[0])
            stream = await a.new_stream(b.get_id(), [protocol])
            async with trio.open_nursery() as nursery:
                for rpc in big:
                    nursery.start_soon(writer.write_msg, stream, rpc)
            with trio.fail_after(20):
                await done.wait()
        return parsed

    host = build_host(generate_identity())
    stock = Pubsub(host, GossipSub(**gossipsub_options(1.0)))
    ours = FixedPubsub(host, GossipSub(**gossipsub_options(1.0)))
    assert await whole_rpcs(stock) != [True, True]
    assert await whole_rpcs(ours) == [True, True]
