"""The Pubsub that carries DNDM adverts: py-libp2p's Pubsub with our fixes, plus what
:class:`~dndm_p2p.discovery.gossip.GossipAdverts` needs to see and to stop cleanly."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream, INotifee
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import signature_validator

from protocols.libp2p_fixes.pubsub import FixedPubsub

__all__ = ["AdvertPubsub", "lone_error", "remove_notifee"]

logger = logging.getLogger(__name__)


class AdvertPubsub(FixedPubsub):
    """The fixed Pubsub (StrictSign), counting bad signatures and malformed RPCs, reporting
    peers' subscriptions, and able to reset its streams.

    * py-libp2p drops a message with a missing or bad signature without telling anyone; this
      checks the signature first, to count it.
    * Its streams are left open when its service stops, so peers would keep sending to a
      stopped pubsub; :meth:`reset_streams` resets them.
    """

    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        *,
        on_bad_signature: Callable[[], None],
        on_bad_stream: Callable[[], None],
        on_subscription: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            host, router, strict_signing=True, on_malformed_rpc=lambda _peer: on_bad_stream()
        )
        self._on_subscription = on_subscription
        self._on_bad_signature = on_bad_signature
        self._inbound: set[INetStream] = set()

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Count and drop a message from a peer whose signature fails; else as py-libp2p."""
        if msg_forwarder != self.my_id and not signature_validator(msg):
            self._on_bad_signature()
            logger.debug("message from %s with a bad signature dropped", msg_forwarder)
            return
        await super().push_msg(msg_forwarder, msg)

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        """Record a peer's (un)subscription, as py-libp2p does, and report its topic."""
        super().handle_subscription(origin_id, sub_message)
        if self._on_subscription is not None:
            self._on_subscription(sub_message.topicid)

    async def stream_handler(self, stream: INetStream) -> None:
        """Serve an inbound pubsub stream as the fixed Pubsub does, keeping it for
        :meth:`reset_streams` while it is served."""
        self._inbound.add(stream)
        try:
            await super().stream_handler(stream)
        finally:
            self._inbound.discard(stream)

    async def reset_streams(self) -> None:
        """Reset every pubsub stream, inbound and outbound."""
        streams = [*self.peers.values(), *self._inbound]
        self.peers.clear()
        self._inbound.clear()
        for stream in streams:
            try:
                await stream.reset()
            except (StreamError, BaseLibp2pError, OSError) as exc:
                logger.debug("resetting a pubsub stream failed: %s", exc)


def remove_notifee(network: object, notifee: INotifee) -> None:
    """Unregister ``notifee`` from the swarm (the abstract network has no such method)."""
    remove = getattr(network, "remove_notifee", None)
    if callable(remove):
        remove(notifee)


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception in ``group``'s nested groups that is not a ``trio.Cancelled``.

    py-libp2p's services nest nurseries, so an error in one of our tasks (or the services)
    comes out wrapped in several groups, next to the cancellations it caused.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
