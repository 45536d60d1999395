"""DHT settings: one validated, immutable object (times in seconds).

Importing this module loads no py-libp2p module, so a node's configuration can name it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.validation import check_count, check_flag, check_rate, check_seconds

__all__ = ["DhtConfig"]


@dataclass(frozen=True, slots=True)
class DhtConfig:
    """How a node uses the DHT.  Times are in seconds; every field is checked on construction
    (:class:`~protocols.errors.ConfigError` naming the field)."""

    #: Serve the DHT (store records, answer queries) rather than only use it.
    server: bool = True
    #: Seconds between two provide operations (py-libp2p accepts 10 per 10 s per peer).
    provide_interval: float = 1.1
    #: Every provided key is provided again this often (receivers keep records 24 to 48 h).
    republish_interval: float = 3600.0
    #: How long a lookup's result is reused.
    lookup_ttl: float = 5.0
    #: Most providers kept from one lookup.
    max_providers: int = 64
    #: Requests (FIND_NODE, GET_PROVIDERS, ADD_PROVIDER, ...) served per second to one peer, on
    #: average; beyond it (and its burst) a request is refused and its stream reset.
    requests_per_second: float = 20.0
    #: Requests one peer may make at once above that rate.
    request_burst: int = 100

    def __post_init__(self) -> None:
        check_flag(self, "server")
        for name in ("provide_interval", "republish_interval", "lookup_ttl"):
            check_seconds(self, name, above=0)
        check_count(self, "max_providers", at_least=1)
        check_rate(self, "requests_per_second")
        check_count(self, "request_burst", at_least=1)
