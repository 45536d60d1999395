"""The node's advertiser: it tells connected peers and discovery of every local declaration.

It observes the router.  A declared intent or interest is advertised to every running session
(and handed to discovery); a closed one is withdrawn the same way, and when the last local
intent on a route closes, every link of that route to a peer closes with it, reliable ones
included.  Each advert carries the next number of one node-wide sequence.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from dndm_p2p.core.adverts import advert_for
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.router import Router
from dndm_p2p.discovery.component import Discovery
from dndm_p2p.node.link_registry import LinkRegistry
from dndm_p2p.node.session import PeerSession
from protocols.v1 import advert_pb2

__all__ = ["Advertiser"]


class Advertiser:
    """A router observer advertising local declarations (see the module docstring).

    ``sessions()`` gives the node's sessions, ``discovery()`` its discovery component (if
    any), and ``closing()`` whether the node is closing (then nothing is withdrawn).
    """

    def __init__(
        self,
        router: Router,
        links: LinkRegistry,
        *,
        sessions: Callable[[], Iterable[PeerSession]],
        discovery: Callable[[], Discovery | None],
        closing: Callable[[], bool],
    ) -> None:
        self._router = router
        self._links = links
        self._sessions = sessions
        self._discovery = discovery
        self._closing = closing
        self._sequence = itertools.count(1)

    def advert(self, handle: Intent[Any] | Interest[Any], *, register: bool) -> advert_pb2.Advert:
        """The advert of a local handle, with the next sequence number."""
        return advert_for(handle, register=register, sequence=next(self._sequence))

    def declared(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle appeared: tell every peer, and open links it needs."""
        discovery = self._discovery()
        if discovery is not None:
            discovery.declared(handle)
        advert = self.advert(handle, register=True)
        for session in list(self._sessions()):
            if session.running:
                session.queue_advert(advert)
                if isinstance(handle, Interest):
                    session.reconcile()

    def withdrawn(self, handle: Intent[Any] | Interest[Any]) -> None:
        """A local handle closed: tell every peer, and close links nobody needs any more."""
        if self._closing():
            return
        discovery = self._discovery()
        if discovery is not None:
            discovery.withdrawn(handle)
        advert = self.advert(handle, register=False)
        for session in list(self._sessions()):
            if not session.running:
                continue
            session.queue_advert(advert)
            if isinstance(handle, Interest):
                session.reconcile()
        if isinstance(handle, Intent):
            state = self._router.lowlevel.state(handle.route)
            if state is None or not state.has_local_intent:
                for session in list(self._sessions()):
                    for link in list(session.outbound):
                        if link.route == handle.route:
                            link.queue.close()
                self._links.forget_route(handle.route)
