"""GossipSub adverts: signed Announcements per namespace, batching, refresh, relays, hostile and
plain py-libp2p peers.  127.0.0.1 only."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed
from multiaddr import Multiaddr

from dndm_p2p.core.adverts import parse_advert
from dndm_p2p.discovery.advert_table import AdvertTable
from dndm_p2p.discovery.gossip import (
    GOSSIP_PROTOCOLS,
    Announcement,
    GossipAdverts,
    GossipConfig,
)
from dndm_p2p.discovery.namespaces import topic_for, topic_namespace
from dndm_p2p.discovery.pubsub import AdvertPubsub
from dndm_p2p.errors import ConfigError
from dndm_p2p.host.build import connect, listen_addrs, running_host
from dndm_p2p.host.identity import generate_identity
from protocols.v1 import advert_pb2, common_pb2, discovery_pb2

TEMP = "dndm.demo.v1.Temperature"
ROUTE = f"{TEMP}@robot.arm.temp"
TOPIC = topic_for("robot")
FAST = GossipConfig(heartbeat=0.5, min_interval=0.05)


def intent(handle_id: int = 1, *, route: str = ROUTE, register: bool = True) -> advert_pb2.Advert:
    return advert_pb2.Advert(
        route=route,
        kind=common_pb2.ROUTE_KIND_INTENT,
        register=register,
        sequence=handle_id,
        handle_id=handle_id,
    )


@dataclass
class Inbox:
    """What ``on_announcement`` received, and a way to wait for something in it."""

    items: list[Announcement] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def put(self, announcement: Announcement) -> None:
        self.items.append(announcement)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[Announcement], bool], seconds: float = 20
    ) -> Announcement:
        with trio.fail_after(seconds):
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                await self.changed.wait()


@dataclass
class Peer:
    host: IHost
    gossip: GossipAdverts
    inbox: Inbox

    @property
    def id(self) -> str:
        return self.host.get_id().to_base58()

    @property
    def addr(self) -> str:
        return str(listen_addrs(self.host)[0])


@asynccontextmanager
async def gossip_peer(
    config: GossipConfig = FAST,
    *,
    join: tuple[str, ...] = (),
    table: AdvertTable | None = None,
) -> AsyncIterator[Peer]:
    """A host running GossipAdverts; what it hears goes to its inbox (and ``table``)."""
    async with running_host(generate_identity()) as host:
        inbox = Inbox()

        def received(announcement: Announcement) -> None:
            inbox.put(announcement)
            if table is not None:
                table.apply(announcement)

        gossip = GossipAdverts(host, config, received)
        for namespace in join:
            gossip.join(namespace)
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            yield Peer(host, gossip, inbox)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def plain_peer(
    *, topic: str = TOPIC, whole_writes: bool = False
) -> AsyncIterator[tuple[IHost, Pubsub]]:
    """A py-libp2p host set up as a go or js peer would be: stock Pubsub, GossipSub, StrictSign.

    ``whole_writes`` gives it our Pubsub's one-write-at-a-time fix, for a peer that must send
    large messages reliably (stock py-libp2p may interleave them with other writes).
    """
    async with running_host(generate_identity()) as host:
        router = GossipSub(
            protocols=list(GOSSIP_PROTOCOLS), degree=6, degree_low=4, degree_high=12,
            heartbeat_interval=1,
        )  # fmt: skip
        pubsub = (
            AdvertPubsub(host, router, on_bad_signature=noop, on_bad_stream=noop)
            if whole_writes
            else Pubsub(host, router, strict_signing=True)
        )
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe(topic)
            yield host, pubsub


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``seconds``."""
    for _ in range(math.ceil(seconds / 0.01)):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"condition not met within {seconds} s")


def noop() -> None:
    pass


def has_advert(
    peer: str, handle_id: int, *, register: bool = True
) -> Callable[[Announcement], bool]:
    return lambda a: (
        a.peer == peer
        and any(ad.handle_id == handle_id and ad.register == register for ad in a.adverts)
    )


# --- configuration and names ------------------------------------------------------------------


def test_topic_names() -> None:
    assert topic_for("robot") == "/dndm/adverts/1.0.0/robot"
    assert topic_namespace("/dndm/adverts/1.0.0/robot") == "robot"
    assert topic_namespace("/other/robot") is None
    assert topic_namespace("/dndm/adverts/1.0.0/a/b") is None
    for bad in ("", "a/b", "a b", "x" * 201, "tab\t"):
        with pytest.raises(ConfigError):
            topic_for(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat": 0},
        {"heartbeat": math.inf},
        {"min_interval": -1},
        {"advert_ttl": 10.0, "refresh": 10.0},
        {"refresh": "20"},
        {"relay_all": 1},
    ],
)
def test_config_is_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GossipConfig(**kwargs)  # type: ignore[arg-type]


# --- between peers ----------------------------------------------------------------------------


async def test_intent_reaches_a_peer_connected_before_start() -> None:
    async with (
        running_host(generate_identity()) as host_a,
        running_host(generate_identity()) as host_c,
    ):
        await connect(host_c, listen_addrs(host_a)[0])
        inbox_a, inbox_c = Inbox(), Inbox()
        gossip_a = GossipAdverts(host_a, FAST, inbox_a.put)
        gossip_c = GossipAdverts(host_c, FAST, inbox_c.put)
        gossip_a.join("robot")
        gossip_c.join("robot")
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip_a.run)
            await nursery.start(gossip_c.run)
            gossip_a.announce("robot", intent(7))
            got = await inbox_c.wait_for(has_advert(host_a.get_id().to_base58(), 7))
            nursery.cancel_scope.cancel()
        assert got.addrs == tuple(str(a) for a in host_a.get_transport_addrs())
        assert got.addrs  # the listen address, 127.0.0.1
    assert got.namespace == "robot"
    (advert,) = got.adverts
    assert advert.is_intent
    assert str(advert.route) == ROUTE
    assert advert.ttl_ms == 60_000
    assert inbox_a.items == []  # our own announcements are not delivered to us
    assert gossip_c.stats.rejected == 0


async def test_line_through_a_relay_carries_register_and_unregister() -> None:
    """A - B - C; B relays every advert topic; A and C never connect to each other.

    The heartbeat is a minute long, so nothing here may wait for it: B joins the topic when
    the subscriptions arrive, and A re-announces when B subscribes.
    """
    slow = GossipConfig(heartbeat=60, min_interval=0.05)
    async with (
        gossip_peer(slow, join=("robot",)) as a,
        gossip_peer(GossipConfig(heartbeat=60, relay_all=True)) as b,
        gossip_peer(slow, join=("robot",)) as c,
    ):
        await connect(a.host, b.addr)
        await connect(c.host, b.addr)
        a.gossip.announce("robot", intent(1))
        got = await c.inbox.wait_for(has_advert(a.id, 1))
        assert got.addrs == tuple(str(x) for x in a.host.get_transport_addrs())
        assert TOPIC in b.gossip.topics()
        assert not a.host.get_network().get_connections(c.host.get_id())

        a.gossip.announce("robot", intent(1, register=False))
        gone = await c.inbox.wait_for(has_advert(a.id, 1, register=False))
        assert gone.sequence > got.sequence
        assert b.inbox.items == []  # B relays "robot" without having joined it
        assert b.gossip.stats.rejected == 0


async def test_refresh_keeps_an_advert_alive_and_its_end_is_seen() -> None:
    config = GossipConfig(heartbeat=0.5, min_interval=0.05, refresh=0.4, advert_ttl=1.2)
    table = AdvertTable()
    async with gossip_peer(join=("robot",), table=table) as c:
        async with gossip_peer(config) as a:
            await connect(a.host, c.addr)
            a.gossip.announce("robot", intent(3))
            first = await c.inbox.wait_for(has_advert(a.id, 3))
            assert first.adverts[0].ttl_ms == 1200
            start = trio.current_time()
            await trio.sleep_until(start + 1.5)  # past the first TTL: refreshes have kept it
            assert table.expire() == []
            entry = table.get(a.id, 3)
            assert entry is not None
            assert entry.sequence > first.sequence
            assert entry.expires_at > start + 1.2
        # A is gone: nobody refreshes any more, and the table says so once the TTL has passed.
        expired = []
        with trio.fail_after(10):
            while table.get(a.id, 3) is not None:
                deadline = table.next_expiry()
                assert deadline is not None
                await trio.sleep_until(deadline)
                expired += table.expire()
        assert [(x.kind, x.entry.peer, x.entry.advert.handle_id) for x in expired] == [
            ("expired", a.id, 3)
        ]


async def test_batching_200_announcements_make_a_handful_of_messages() -> None:
    config = GossipConfig(heartbeat=0.5)  # min_interval 0.25 s, the default
    async with gossip_peer(config) as a, gossip_peer(join=("robot",)) as c:
        await connect(a.host, c.addr)
        a.gossip.announce("robot", intent(1000))  # warm-up: C is subscribed and heard
        await c.inbox.wait_for(has_advert(a.id, 1000))
        before = a.gossip.stats.published
        start = trio.current_time()
        for handle_id in range(1, 201):
            a.gossip.announce("robot", intent(handle_id, route=f"{TEMP}@robot.j{handle_id}"))
            await trio.lowlevel.checkpoint()
        elapsed = trio.current_time() - start
        await until(lambda: _heard(c.inbox, a.id) >= set(range(1, 201)))
        published = a.gossip.stats.published - before
    # One publish at once, then at most one per min_interval (a refresh may add one).
    assert published <= 2 + math.ceil(elapsed / config.min_interval)
    assert published <= 5, f"{published} messages for 200 adverts in {elapsed:.3f} s"


def _heard(inbox: Inbox, peer: str) -> set[int]:
    return {ad.handle_id for a in inbox.items if a.peer == peer for ad in a.adverts}


async def test_join_is_counted_and_leave_unsubscribes() -> None:
    async with gossip_peer() as a:
        a.gossip.join("robot")
        a.gossip.join("robot")
        await until(lambda: a.gossip.topics() == [TOPIC])
        a.gossip.leave("robot")
        assert a.gossip.joined() == ["robot"]
        a.gossip.leave("robot")
        await until(lambda: a.gossip.topics() == [])
        with pytest.raises(ConfigError):
            a.gossip.leave("robot")


async def test_a_restarted_node_is_heard_at_once() -> None:
    """A node restarts with the same identity: its new messages are not taken for old ones."""
    identity = generate_identity()
    async with gossip_peer(join=("robot",)) as c:
        for round_ in (1, 2):
            async with running_host(identity) as host:
                gossip = GossipAdverts(host, FAST, Inbox().put)
                async with trio.open_nursery() as nursery:
                    await nursery.start(gossip.run)
                    await connect(host, c.addr)
                    for handle_id in range(round_ * 10, round_ * 10 + 3):
                        gossip.announce("robot", intent(handle_id))
                        await c.inbox.wait_for(has_advert(host.get_id().to_base58(), handle_id))
                    nursery.cancel_scope.cancel()
                # Stopped: the host is left without pubsub handlers.
                assert not set(GOSSIP_PROTOCOLS) & set(host.get_mux().get_protocols())


# --- plain py-libp2p peers (as go or js peers would be) ---------------------------------------


async def test_plain_gossipsub_peer_receives_and_parses_our_adverts() -> None:
    async with gossip_peer() as a, plain_peer() as (host, pubsub):
        subscription = pubsub.subscribed_topics_receive[TOPIC]
        await connect(host, a.addr)
        a.gossip.announce("robot", intent(5))
        with trio.fail_after(20):
            message = await subscription.get()
        addrs = a.host.get_transport_addrs()
    assert message.from_id == a.host.get_id().to_bytes()
    assert len(message.signature) == 64  # StrictSign
    announcement = discovery_pb2.Announcement.FromString(message.data)
    assert announcement.peer_id == message.from_id
    assert [Multiaddr(x) for x in announcement.addrs] == addrs
    (advert,) = announcement.adverts
    assert (advert.route, advert.register, advert.handle_id) == (ROUTE, True, 5)
    assert str(parse_advert(advert).route) == ROUTE


async def test_hostile_announcements_are_rejected_and_counted() -> None:
    async with (
        gossip_peer(join=("robot",)) as c,
        plain_peer(whole_writes=True) as (host, pubsub),
    ):
        await connect(host, c.addr)
        # A stock router sends its own messages to its mesh only: wait until C is in it.
        await pubsub.wait_for_mesh(c.host.get_id(), TOPIC, timeout=20)
        me, someone_else = host.get_id().to_bytes(), ID.from_base58(c.id).to_bytes()

        def announcement(peer_id: bytes, handle_id: int) -> bytes:
            return discovery_pb2.Announcement(
                peer_id=peer_id, adverts=[intent(handle_id)], sequence=handle_id
            ).SerializeToString()

        await pubsub.publish(TOPIC, announcement(someone_else, 1))  # forged: not the signer
        await pubsub.publish(TOPIC, b"\xff\xff not protobuf")  # malformed
        await pubsub.publish(TOPIC, b"\x00" * (64 * 1024 + 1))  # oversize
        pubsub.strict_signing = False  # an unsigned message
        await pubsub.publish(TOPIC, announcement(me, 2))
        pubsub.strict_signing = True
        bad_advert = advert_pb2.Advert(route="no route", kind=common_pb2.ROUTE_KIND_INTENT)
        honest = discovery_pb2.Announcement(peer_id=me, adverts=[intent(3), bad_advert], sequence=3)
        await pubsub.publish(TOPIC, honest.SerializeToString())

        got = await c.inbox.wait_for(has_advert(host.get_id().to_base58(), 3))
        stats = c.gossip.stats
        await until(lambda: stats.rejected >= 4)
        assert (
            stats.rejected_forged,
            stats.rejected_malformed,
            stats.rejected_oversize,
            stats.rejected_signature,
        ) == (1, 1, 1, 1)
        assert [a.sequence for a in c.inbox.items] == [3]
        assert [ad.handle_id for ad in got.adverts] == [3]
        assert stats.bad_adverts == 1


# --- py-libp2p pubsub stream bugs -------------------------------------------------------------


async def send_garbage_rpc(sender: IHost, target: IHost) -> None:
    """Open a pubsub stream to ``target`` and write one length-prefixed frame of non-protobuf."""
    stream = await sender.new_stream(target.get_id(), [GOSSIP_PROTOCOLS[0]])
    await stream.write(encode_varint_prefixed(b"\xff\xff\xff not an RPC"))


async def test_a_malformed_rpc_costs_only_its_stream() -> None:
    async with (
        gossip_peer(join=("robot",)) as c,
        gossip_peer() as a,
        running_host(generate_identity()) as evil,
    ):
        await connect(evil, c.addr)
        await send_garbage_rpc(evil, c.host)
        await until(lambda: c.gossip.stats.bad_streams == 1)
        await connect(a.host, c.addr)
        a.gossip.announce("robot", intent(1))
        await c.inbox.wait_for(has_advert(a.id, 1))  # C still works


async def test_an_error_in_the_callback_ends_run_as_itself() -> None:
    class Boom(Exception):
        pass

    def explode(announcement: Announcement) -> None:
        raise Boom(announcement.peer)

    async with gossip_peer() as a, running_host(generate_identity()) as host:
        gossip = GossipAdverts(host, FAST, explode)
        gossip.join("robot")
        await connect(host, a.addr)
        a.gossip.announce("robot", intent(1))
        with trio.fail_after(20), pytest.raises(Boom, match=a.id):
            await gossip.run()
        assert not set(GOSSIP_PROTOCOLS) & set(host.get_mux().get_protocols())


async def test_a_relay_forwards_to_every_subscriber_not_only_its_mesh() -> None:
    """A relay (a bootstrap server) with more subscribers behind it than its mesh degree: all
    of them hear an advert at once, not only the 6 to 12 in its mesh (the heartbeat is a
    minute long, so gossip's IHAVE round cannot be what delivers it)."""
    slow = GossipConfig(heartbeat=60, min_interval=0.05)
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(
            gossip_peer(GossipConfig(heartbeat=60, relay_all=True))
        )
        announcer = await stack.enter_async_context(gossip_peer(slow, join=("robot",)))
        listeners = [
            await stack.enter_async_context(gossip_peer(slow, join=("robot",))) for _ in range(14)
        ]
        for peer in [announcer, *listeners]:
            await connect(peer.host, relay.addr)
        await until(lambda: len(relay.gossip.topics()) == 1)
        announcer.gossip.announce("robot", intent(7))
        with trio.fail_after(5):  # without flood relaying, the last ones take 20 s here
            for listener in listeners:
                await listener.inbox.wait_for(has_advert(announcer.id, 7))
