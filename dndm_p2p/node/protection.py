"""The node's protection counters: every refusal, trim and limit hit, by name.

:func:`protection_counters` reads them from the node's running host (connection admission,
protocol handlers, the peerstore) and from the counts the node keeps itself; it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dndm_p2p.host.build import admission_of, handler_failures

if TYPE_CHECKING:
    from libp2p.abc import IHost

__all__ = ["protection_counters"]


def protection_counters(
    host: IHost | None,
    *,
    errors: int,
    dropped_streams: int,
    rate_limited: int,
    discovery: Mapping[str, int] | None,
) -> dict[str, int]:
    """The protection counters, by name.

    ``connections.*``: inbound connections refused by limit or trimmed (see
    :class:`~dndm_p2p.host.limits.ConnectionLimits`); ``handlers.failed``: protocol
    handlers that raised (the stream was reset); ``peerstore.*``: its size and the peers
    it forgot; ``dht.refused_requests``: DHT requests over a peer's rate limit;
    ``discovery.*``: dials discovery refused; ``control.rate_limited``: control requests
    (adverts, pings) refused as over their peer's rate; ``errors``, ``dropped_streams``.
    Without a ``host`` (the node is not running) only the node's own counts are given.
    """
    found: dict[str, int] = {
        "errors": errors,
        "dropped_streams": dropped_streams,
        "control.rate_limited": rate_limited,
    }
    if host is not None:
        admission = admission_of(host)
        if admission is not None:
            for name, value in admission.stats.as_dict().items():
                found[f"connections.{name}"] = value
            found["connections.pending"] = admission.pending_count()
            found["connections.foreign"] = admission.foreign_count()
        found["handlers.failed"] = handler_failures(host).count
        store = host.get_peerstore()
        found["peerstore.peers"] = len(store.peer_ids())
        found["peerstore.evicted"] = int(getattr(store, "evicted", 0))
    if discovery is not None:
        found.update(discovery)
    return found
