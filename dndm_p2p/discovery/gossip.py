"""GossipSub adverts: a node's intents and interests announced on one topic per namespace.

:class:`GossipAdverts` runs py-libp2p's Pubsub with GossipSub on an already running host and
carries DNDM adverts over it.  Each namespace (by default a route's first path segment) has one
topic, :func:`topic_for` (``/dndm/adverts/1.0.0/<namespace>``), whose messages are signed
``dndm.v1.Announcement``\\ s (:mod:`dndm_p2p.discovery.announcements`): the advertiser's peer id and
addresses, a batch of adverts and a sequence number.

* **Sending.** :meth:`GossipAdverts.announce` queues an advert and never blocks.  Adverts are
  batched per namespace: at most one publish per namespace per ``min_interval`` seconds (a
  batch too big for one message is split), because py-libp2p's GossipSub carries only tens of
  messages a second.  Registered adverts are re-announced every ``refresh`` seconds, with a TTL
  of ``advert_ttl``, so receivers can forget those of a peer that went away; an unregister is
  sent once and ends the refreshes of its handle.  When a direct peer newly subscribes to a
  namespace we announce in, we re-announce there early (at most once a second), so newcomers
  need not wait for the next refresh.
* **Receiving.** :meth:`GossipAdverts.join` subscribes to a namespace's topic; each verified
  Announcement from another peer reaches ``on_announcement`` as an :class:`Announcement` (its
  adverts parsed; bad ones counted and skipped).  Each Announcement's ``sequence`` orders the
  adverts of one advertiser; :class:`dndm_p2p.discovery.advert_table.AdvertTable` keeps received
  adverts
  with that ordering and their expiry.
* **Checks.** Messages must be signed (StrictSign, as go- and js-libp2p require).  A topic
  validator, run before a message is delivered *or relayed*, rejects an Announcement bigger
  than 64 KiB (unread), one that does not parse, and one whose ``peer_id`` is not the message's
  signer.  Rejections are counted in :attr:`GossipAdverts.stats`.
* **Relaying.** GossipSub nodes relay only the topics they are subscribed to.  A bootstrap
  server (``relay_all=True``) therefore joins every ``/dndm/adverts/`` topic a connected peer
  subscribes to (as soon as the subscription arrives), so that peers that know only it still
  hear each other, and forwards what it relays to every subscriber, not only its mesh of 6 to
  12 peers per topic (``flood_relay``), since the nodes behind it may know no other peer.  Our
  own messages always go to every subscriber (flood publishing, as go-libp2p does).

py-libp2p settings (see the GossipSub section of the py-libp2p notes): protocols
``/meshsub/1.2.0``, ``1.1.0``, ``1.0.0``; heartbeat from the config (py-libp2p's default is
120 s); spam protection off (its 10 messages/s per peer and topic silently drops what a relay
forwards); adaptive gossip off (py-libp2p's "network health" adaptation would raise the heartbeat
to 30-60 s after the first 30 s in a small mesh, see :mod:`protocols.libp2p_fixes`); IP-diversity
grafting off (not in go-libp2p; meaningless on one host).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from dndm_p2p.core.adverts import RemoteAdvert, parse_advert
from dndm_p2p.discovery.announcements import (
    RejectedAnnouncement,
    Rejection,
    decode_addrs,
    decode_announcement,
    encode_announcements,
)
from dndm_p2p.discovery.config import GossipConfig
from dndm_p2p.discovery.namespaces import TOPIC_PREFIX, check_namespace, topic_for, topic_namespace
from dndm_p2p.discovery.pubsub import AdvertPubsub, lone_error, remove_notifee
from dndm_p2p.errors import ConfigError, ProtocolError
from protocols.libp2p_fixes.pubsub import (
    FloodPublishGossipSub,
    steady_heartbeat_options,
)
from protocols.v1 import advert_pb2

if TYPE_CHECKING:
    from trio_typing import TaskStatus

__all__ = [
    "GOSSIP_PROTOCOLS",
    "Announcement",
    "GossipAdverts",
    "GossipConfig",
    "GossipStats",
    "gossipsub_options",
]

logger = logging.getLogger(__name__)

#: The GossipSub protocol versions offered, most preferred first.
GOSSIP_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID)
#: Most adverts waiting to be sent in one namespace; beyond it new handles are dropped.
MAX_PENDING_ADVERTS = 10_000
#: Most topics a ``relay_all`` node joins only to relay them.
MAX_RELAY_TOPICS = 1_000
#: Least seconds between two early re-announcements in one namespace (for new subscribers).
EARLY_REFRESH_GAP = 1.0
#: Seconds allowed, on shutdown, for resetting the pubsub streams.
_CLOSE_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Announcement:
    """A verified Announcement from another peer, as ``on_announcement`` receives it."""

    #: The advertiser's peer id (base58): the signer of the GossipSub message.
    peer: str
    #: Its addresses (without ``/p2p``), as announced.
    addrs: tuple[str, ...]
    #: Its adverts, in order; each register carries its TTL (``ttl_ms``).
    adverts: tuple[RemoteAdvert, ...]
    #: The namespace (topic) it came on.
    namespace: str
    #: The advertiser's Announcement counter: a greater one is newer.
    sequence: int


@dataclass(slots=True)
class GossipStats:
    """Counters of one :class:`GossipAdverts`."""

    #: GossipSub messages published.
    published: int = 0
    #: Adverts in them (refreshes included).
    adverts_sent: int = 0
    #: Adverts not sent: a publish failed, too many pending, or one advert too big to send.
    dropped: int = 0
    #: Verified Announcements from other peers delivered to ``on_announcement``.
    announcements_received: int = 0
    #: Adverts in them.
    adverts_received: int = 0
    #: Adverts skipped because they did not parse (the rest of their Announcement is kept).
    bad_adverts: int = 0
    #: Messages rejected: missing or bad signature.
    rejected_signature: int = 0
    #: Messages rejected: the Announcement's peer id is not the signer.
    rejected_forged: int = 0
    #: Messages rejected: not a valid Announcement.
    rejected_malformed: int = 0
    #: Messages rejected: bigger than 64 KiB.
    rejected_oversize: int = 0
    #: Pubsub streams reset because the peer sent an RPC that is not valid protobuf.
    bad_streams: int = 0

    @property
    def rejected(self) -> int:
        """All rejected messages."""
        return (
            self.rejected_signature
            + self.rejected_forged
            + self.rejected_malformed
            + self.rejected_oversize
        )

    def as_dict(self) -> dict[str, int]:
        """The counters by name, ``rejected`` included."""
        counters = {field.name: int(getattr(self, field.name)) for field in fields(self)}
        return {**counters, "rejected": self.rejected}


def gossipsub_options(heartbeat: float) -> dict[str, Any]:
    """The GossipSub settings DNDM uses (see the module doc), as keyword arguments.

    They include :func:`protocols.libp2p_fixes.pubsub.steady_heartbeat_options`, so the
    heartbeat stays ``heartbeat``.
    """
    return {
        "protocols": list(GOSSIP_PROTOCOLS),
        "degree": 6,
        "degree_low": 4,
        "degree_high": 12,
        "heartbeat_interval": heartbeat,  # annotated int in py-libp2p; a float works
        "spam_protection_enabled": False,
        "eclipse_protection_enabled": False,
        **steady_heartbeat_options(),
    }


class GossipAdverts:
    """Adverts over GossipSub on ``host`` (see the module doc).

    :param host: a running host (see :func:`dndm_p2p.host.build.running_host`).
    :param config: the gossip settings.
    :param on_announcement: called, in the receiving task, with each verified Announcement of
        another peer on a joined namespace.  It must not block; an exception it raises ends
        :meth:`run`.
    :param addrs: returns the addresses to announce (without ``/p2p``); by default the host's
        listen addresses, except unspecified ones (``0.0.0.0``, ``::``).
    """

    def __init__(
        self,
        host: IHost,
        config: GossipConfig,
        on_announcement: Callable[[Announcement], None],
        *,
        addrs: Callable[[], Sequence[Multiaddr]] | None = None,
    ) -> None:
        if not isinstance(config, GossipConfig):
            raise ConfigError(f"config must be a GossipConfig, not {type(config).__name__}")
        self.host = host
        self.config = config
        self.stats = GossipStats()
        self._on_announcement = on_announcement
        self._addrs = addrs if addrs is not None else self._listen_addrs
        self._peer_id = host.get_id().to_bytes()
        self._ttl_ms = math.ceil(config.advert_ttl * 1000)
        #: Joined namespaces, with their join count.
        self._joined: dict[str, int] = {}
        #: Registered adverts, re-announced every ``refresh``: namespace -> handle id -> advert.
        self._live: dict[str, dict[int, advert_pb2.Advert]] = {}
        #: Adverts waiting for their namespace's next publish.
        self._pending: dict[str, dict[int, advert_pb2.Advert]] = {}
        self._last_publish: dict[str, float] = {}
        self._last_early_refresh: dict[str, float] = {}
        #: The subscribers (direct peers) of each namespace at its last full announcement.
        self._announced_to: dict[str, set[ID]] = {}
        self._sequence = 0
        self._publish_wanted = trio.Event()
        self._topics_changed = trio.Event()
        self._topics: dict[str, ISubscriptionAPI] = {}
        self._running = False

    # -- the interface --------------------------------------------------------------------------

    def join(self, namespace: str) -> None:
        """Receive the Announcements of ``namespace`` (counted: as often as :meth:`leave`)."""
        check_namespace(namespace)
        self._joined[namespace] = self._joined.get(namespace, 0) + 1
        self._topics_changed.set()

    def leave(self, namespace: str) -> None:
        """Undo one :meth:`join` of ``namespace``; the last one unsubscribes from its topic.

        :raises ConfigError: ``namespace`` is not joined.
        """
        count = self._joined.get(namespace, 0)
        if count <= 0:
            raise ConfigError(f"namespace {namespace!r} is not joined")
        if count == 1:
            del self._joined[namespace]
        else:
            self._joined[namespace] = count - 1
        self._topics_changed.set()

    def joined(self) -> list[str]:
        """The namespaces joined, sorted."""
        return sorted(self._joined)

    def topics(self) -> list[str]:
        """The topics subscribed to now (joined ones, and relayed ones with ``relay_all``)."""
        return sorted(self._topics)

    def announce(self, namespace: str, advert: advert_pb2.Advert) -> None:
        """Queue ``advert`` for ``namespace``'s next publish; never blocks.

        A register (``advert.register``) is kept and re-announced every ``refresh`` seconds
        with ``ttl_ms`` set to ``advert_ttl``; an unregister is sent once and ends the
        refreshes of its ``handle_id``.  Of several adverts queued for one handle before the
        next publish, only the last is sent.  The advert is copied.
        """
        check_namespace(namespace)
        if not isinstance(advert, advert_pb2.Advert):
            raise ConfigError(f"advert must be a dndm.v1.Advert, not {type(advert).__name__}")
        copy = advert_pb2.Advert()
        copy.CopyFrom(advert)
        live = self._live.setdefault(namespace, {})
        if copy.register:
            copy.ttl_ms = self._ttl_ms
            live[copy.handle_id] = copy
        else:
            copy.ttl_ms = 0
            live.pop(copy.handle_id, None)
        if not live:
            del self._live[namespace]
        pending = self._pending.setdefault(namespace, {})
        if copy.handle_id not in pending and len(pending) >= MAX_PENDING_ADVERTS:
            self.stats.dropped += 1
            logger.warning("too many adverts pending in namespace %r: one dropped", namespace)
            return
        pending[copy.handle_id] = copy
        self._publish_wanted.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run Pubsub and GossipSub and the advert tasks until cancelled.

        ``task_status.started()`` is called once peers can be reached.  On exit the pubsub
        streams are reset and the host is left as it was found (no pubsub protocol handlers).

        Run it once per host, for the host's life (start it before connecting to peers, though
        peers already connected are picked up).  py-libp2p peers do not notice that a pubsub
        stopped on a live connection (the end of its stream is not taken as the peer leaving),
        so a second run on the same host may not hear from peers connected throughout until
        they next reconnect.

        :raises ConfigError: this object is already running.
        """
        if self._running:
            raise ConfigError("this GossipAdverts is already running")
        self._running = True
        try:
            await self._run(task_status)
        except BaseExceptionGroup as group:
            lone = lone_error(group)
            if lone is None:
                raise
        else:
            return
        finally:
            self._running = False
            self._topics.clear()
        raise lone  # outside the except block, so the group does not become its context

    # -- running --------------------------------------------------------------------------------

    async def _run(self, task_status: TaskStatus[None]) -> None:
        """Start the services and tasks; the one place py-libp2p's objects are made and undone."""
        network = self.host.get_network()
        notifees_before = list(getattr(network, "notifees", []))
        router = FloodPublishGossipSub(**gossipsub_options(self.config.heartbeat))
        router.flood_relay = self.config.relay_all
        pubsub = AdvertPubsub(
            self.host,
            router,
            on_bad_signature=self._count_bad_signature,
            on_bad_stream=self._count_bad_stream,
            on_subscription=self._peer_subscription,
        )
        added_notifees = [
            notifee
            for notifee in getattr(network, "notifees", [])
            if not any(notifee is before for before in notifees_before)
        ]
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    for peer_id in self.host.get_connected_peers():
                        # Pubsub hears only of connections made after it starts.
                        nursery.start_soon(pubsub.ensure_peer_stream, peer_id)
                    nursery.start_soon(self._topics_loop, pubsub, nursery)
                    nursery.start_soon(self._publish_loop, pubsub)
                    task_status.started()
        finally:
            for protocol in GOSSIP_PROTOCOLS:
                self.host.remove_stream_handler(protocol)
            for notifee in added_notifees:
                remove_notifee(network, notifee)
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
                await pubsub.reset_streams()

    async def _topics_loop(self, pubsub: AdvertPubsub, nursery: trio.Nursery) -> None:
        """Keep the subscriptions in line with the joined (and relayed) namespaces."""
        while True:
            self._topics_changed = trio.Event()
            wanted = {topic_for(namespace) for namespace in self._joined}
            if self.config.relay_all:
                wanted |= self._relay_topics(pubsub, limit=MAX_RELAY_TOPICS - len(wanted))
            for topic in [topic for topic in self._topics if topic not in wanted]:
                del self._topics[topic]
                await pubsub.unsubscribe(topic)  # ends the topic's receive loop
                pubsub.remove_topic_validator(topic)
            for topic in sorted(wanted - self._topics.keys()):
                pubsub.set_topic_validator(topic, self._validator, False)
                subscription = await pubsub.subscribe(topic)
                self._topics[topic] = subscription
                nursery.start_soon(self._receive_loop, subscription, topic)
            self._watch_subscribers(pubsub)
            with trio.move_on_after(self.config.heartbeat):
                await self._topics_changed.wait()

    def _relay_topics(self, pubsub: Pubsub, *, limit: int) -> set[str]:
        """The advert topics connected peers subscribe to (at most ``limit``)."""
        found: set[str] = set()
        for topic, peers in sorted(pubsub.peer_topics.items()):
            if len(found) >= limit:
                break
            if peers and topic_namespace(topic) is not None:
                found.add(topic)
        return found

    def _watch_subscribers(self, pubsub: Pubsub) -> None:
        """Re-announce early where a direct peer subscribed since our last full announcement."""
        now = trio.current_time()
        for namespace in [name for name in self._announced_to if name not in self._live]:
            del self._announced_to[namespace]
        for namespace, live in self._live.items():
            current = pubsub.peer_topics.get(topic_for(namespace), set())
            if current <= self._announced_to.get(namespace, set()):
                continue
            if now - self._last_early_refresh.get(namespace, -math.inf) < EARLY_REFRESH_GAP:
                continue  # again at the next look
            self._last_early_refresh[namespace] = now
            pending = self._pending.setdefault(namespace, {})
            for handle_id, advert in live.items():
                pending.setdefault(handle_id, advert)
            self._publish_wanted.set()

    async def _publish_loop(self, pubsub: Pubsub) -> None:
        """Publish what is pending, at most once per ``min_interval`` per namespace; refresh."""
        next_refresh = trio.current_time() + self.config.refresh
        while True:
            self._publish_wanted = trio.Event()
            now = trio.current_time()
            if now >= next_refresh:
                next_refresh = now + self.config.refresh
                for namespace, live in self._live.items():
                    pending = self._pending.setdefault(namespace, {})
                    for handle_id, advert in live.items():
                        pending.setdefault(handle_id, advert)
            wake_at = next_refresh
            for namespace in list(self._pending):
                due = self._last_publish.get(namespace, -math.inf) + self.config.min_interval
                if due <= now:
                    await self._publish(pubsub, namespace, now)
                else:
                    wake_at = min(wake_at, due)
            with trio.move_on_at(wake_at):
                await self._publish_wanted.wait()

    async def _publish(self, pubsub: Pubsub, namespace: str, now: float) -> None:
        """Publish the adverts pending in ``namespace`` (in one message or, if large, several)."""
        pending = self._pending.pop(namespace)
        self._last_publish[namespace] = now
        if not pending:
            return
        adverts = list(pending.values())
        topic = topic_for(namespace)
        if pending.keys() >= self._live.get(namespace, {}).keys():
            # Everything live is in this publish: these subscribers will have heard it all.
            self._announced_to[namespace] = set(pubsub.peer_topics.get(topic, ()))
        addrs = [addr.to_bytes() for addr in self._addrs()]
        messages, too_big = encode_announcements(self._peer_id, addrs, adverts, self._next_sequence)
        if too_big:
            self.stats.dropped += len(too_big)
            logger.warning("%d advert(s) too big for an announcement: dropped", len(too_big))
        for message in messages:
            try:
                await pubsub.publish(topic, message.SerializeToString())
            except BaseLibp2pError as exc:
                self.stats.dropped += len(message.adverts)
                logger.warning("publishing adverts on %s failed: %s", topic, exc)
                continue
            self.stats.published += 1
            self.stats.adverts_sent += len(message.adverts)

    def _next_sequence(self) -> int:
        """The next Announcement sequence: increasing, and ahead of the clock's microseconds."""
        self._sequence = max(self._sequence + 1, time.time_ns() // 1000)
        return self._sequence

    def _listen_addrs(self) -> list[Multiaddr]:
        """The host's listen addresses, except unspecified ones (nobody can dial those)."""
        return [
            addr
            for addr in self.host.get_transport_addrs()
            if not any(
                proto.name in ("ip4", "ip6")
                and addr.value_for_protocol(proto.name) in ("0.0.0.0", "::")
                for proto in addr.protocols()
            )
        ]

    # -- receiving ------------------------------------------------------------------------------

    def _validator(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        """GossipSub topic validator: run before a message is delivered or relayed."""
        try:
            decode_announcement(message.data, message.from_id)
        except RejectedAnnouncement as exc:
            self._count_rejection(exc.reason)
            logger.debug("announcement from %s via %s rejected: %s", _b58(message), forwarder, exc)
            return False
        return True

    async def _receive_loop(self, subscription: ISubscriptionAPI, topic: str) -> None:
        """Drain one topic's subscription (py-libp2p drops messages beyond 32 unread)."""
        namespace = topic[len(TOPIC_PREFIX) :]
        while True:
            try:
                message = await subscription.get()
            except trio.EndOfChannel:
                return  # unsubscribed
            if message.from_id == self._peer_id or namespace not in self._joined:
                continue  # our own, or a topic we only relay
            self._deliver(message, namespace)

    def _deliver(self, message: rpc_pb2.Message, namespace: str) -> None:
        try:
            wire = decode_announcement(message.data, message.from_id)
            addrs = decode_addrs(wire.addrs)
        except RejectedAnnouncement as exc:  # the validator let it through: cannot happen
            self._count_rejection(exc.reason)
            logger.warning("announcement from %s rejected late: %s", _b58(message), exc)
            return
        adverts: list[RemoteAdvert] = []
        for raw in wire.adverts:
            try:
                adverts.append(parse_advert(raw))
            except ProtocolError as exc:
                self.stats.bad_adverts += 1
                logger.debug("bad advert from %s skipped: %s", _b58(message), exc)
        self.stats.announcements_received += 1
        self.stats.adverts_received += len(adverts)
        self._on_announcement(
            Announcement(
                peer=_b58(message),
                addrs=addrs,
                adverts=tuple(adverts),
                namespace=namespace,
                sequence=wire.sequence,
            )
        )

    def _count_rejection(self, reason: Rejection) -> None:
        name = f"rejected_{reason.value}"
        setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _peer_subscription(self, topic: str) -> None:
        """A peer (un)subscribed to ``topic``: look at the topics now, not at the next beat."""
        namespace = topic_namespace(topic)
        if namespace is not None and (self.config.relay_all or namespace in self._live):
            self._topics_changed.set()

    def _count_bad_signature(self) -> None:
        self.stats.rejected_signature += 1

    def _count_bad_stream(self) -> None:
        self.stats.bad_streams += 1


def _b58(message: rpc_pb2.Message) -> str:
    """The base58 peer id of a message's signer (or its raw bytes in hex if it is no id)."""
    try:
        return ID(message.from_id).to_base58()
    except (ValueError, TypeError):
        return message.from_id.hex()


