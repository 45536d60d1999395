"""Snapshots of a node's state for the application and the admin endpoint: its peers, its
links and every intent and interest it knows of, as :mod:`dndm_p2p.node.types` records."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dndm_p2p.core.adverts import RemoteAdvert
from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.route import Route, message_full_name
from dndm_p2p.core.router import Router
from dndm_p2p.discovery.component import Discovered
from dndm_p2p.node.session import PeerSession
from dndm_p2p.node.types import KnownRoute, LinkStats, PeerInfo
from protocols.v1 import common_pb2

__all__ = ["known_routes", "link_stats", "peer_infos"]


def peer_infos(
    sessions: Iterable[PeerSession], addrs_of: Callable[[PeerSession], Iterable[object]]
) -> list[PeerInfo]:
    """One record per session in ``sessions``; ``addrs_of`` gives a peer's known addresses."""
    return [
        PeerInfo(
            session.peer,
            session.remote_name,
            tuple(str(a) for a in addrs_of(session)),
            session.stats.rtt_us,
            tuple(session.linked_routes()),
        )
        for session in sessions
    ]


def known_routes(
    router: Router, sessions: Iterable[PeerSession], discovered: Iterable[Discovered]
) -> list[KnownRoute]:
    """Every intent and interest known: the local ones, those the running ``sessions``' peers
    advertised, and those discovery learnt of."""
    handles: list[Intent[Any] | Interest[Any]] = [*router.intents()]
    handles.extend(router.interests())
    known = [
        KnownRoute(
            _shown_route(handle),
            "intent" if isinstance(handle, Intent) else "interest",
            "local",
            None,
            message_full_name(handle.msg_type),
            bool(handle.tracker),
        )
        for handle in handles
    ]
    for session in sessions:
        for table, kind in (
            (session.remote_intents, "intent"),
            (session.remote_interests, "interest"),
        ):
            linked_routes = [link.route for link, _ in session.inbound.values()]
            linked_routes.extend(link.route for link in session.outbound)
            for advert in table.values():
                shown = advert.route if advert.route is not None else advert.pattern
                known.append(
                    KnownRoute(
                        str(shown),
                        kind,
                        "peer",
                        session.peer,
                        advert.type_name,
                        any(_advert_covers(advert, r) for r in linked_routes),
                    )
                )
    known.extend(
        KnownRoute(entry.route, entry.kind, entry.origin, entry.peer, entry.msg_type, False)
        for entry in discovered
    )
    return known


def link_stats(sessions: Iterable[PeerSession]) -> list[LinkStats]:
    """Every remote link of ``sessions``, both directions."""
    found = []
    for session in sessions:
        for link, _ in session.inbound.values():
            found.append(
                LinkStats(
                    str(link.route),
                    session.peer,
                    "in",
                    link.received,
                    link.dropped_by_publisher,
                    link.qos.reliable,
                    _compression_name(link.compression),
                )
            )
        for out in session.outbound:
            found.append(
                LinkStats(
                    str(out.route),
                    session.peer,
                    "out",
                    out.sent,
                    out.queue.dropped,
                    out.reliable,
                    _compression_name(out.compression),
                )
            )
    return found


def _advert_covers(advert: RemoteAdvert, route: Route) -> bool:
    return advert.route == route if advert.route is not None else advert.matches(route)


def _shown_route(handle: Intent[Any] | Interest[Any]) -> str:
    if isinstance(handle, Interest) and handle.route is None:
        return str(handle.pattern)
    return str(handle.route)


def _compression_name(value: int) -> str:
    return common_pb2.Compression.Name(value).removeprefix("COMPRESSION_").lower()  # type: ignore[arg-type]
