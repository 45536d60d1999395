"""Which control requests (adverts and pings) of one peer the session answers.

A :class:`ControlAdmission` admits at most ``config.control_rate`` requests a second from one
peer (bursts up to ``config.control_burst``); every request over the rate moves
``PeerStats.rate_limited``, and at most once a second such a refusal is also told to the peer
(a ``RATE_LIMITED`` Result answering it) and to the application.  A ping whose payload exceeds
``limits.ping_payload`` is refused too: counted in the resource manager, reported, and answered
with a ``RESOURCE_LIMIT_EXCEEDED`` Result instead of a pong.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from dndm_p2p.config import NodeConfig
from dndm_p2p.errors import RateLimited, ResourceLimitExceeded
from dndm_p2p.node.resources import ResourceManager
from dndm_p2p.node.results import control_result
from dndm_p2p.node.types import PeerStats
from protocols.ratelimit import KeyedRateLimit
from protocols.v1 import control_pb2

__all__ = ["ControlAdmission"]

#: Seconds between two reported rate refusals (the others are only counted).
_REPORT_EVERY = 1.0


class ControlAdmission:
    """Admits or refuses one peer's control requests (see the module docstring)."""

    def __init__(
        self,
        peer: str,
        config: NodeConfig,
        stats: PeerStats,
        resources: ResourceManager,
        answer: Callable[[control_pb2.ControlFrame], object],
        report_error: Callable[..., None],
    ) -> None:
        """``answer`` queues a frame to the peer; ``report_error(error, peer=…)`` tells the
        application."""
        self.peer = peer
        self._config = config
        self._stats = stats
        self._resources = resources
        self._answer = answer
        self._report_error = report_error
        self._rate = KeyedRateLimit(
            config.control_rate, config.control_burst, trio.current_time, max_keys=1
        )
        self._last_refusal_reported = -math.inf

    def admit(self, frame: control_pb2.ControlFrame) -> bool:
        """True when the session should act on ``frame``; False when it was refused (and the
        refusal counted, and answered and reported as the module docstring says)."""
        kind = frame.WhichOneof("body")
        if kind not in ("adverts", "ping"):
            return True
        if not self._rate.allow(None):
            self._refuse_over_rate(kind, frame.header.sequence)
            return False
        limit = self._config.limits.ping_payload
        if kind == "ping" and len(frame.ping.payload) > limit:
            error = ResourceLimitExceeded(
                f"{self.peer} sent a ping with {len(frame.ping.payload)} bytes of payload, "
                f"over the {limit}-byte limit; not answered",
                resource="memory",
                use="ping_payload",
                scope="peer",
                size=len(frame.ping.payload),
                limit=limit,
                peer=self.peer,
            )
            self._resources.count_refusal(error)
            self._report_error(error, peer=self.peer)
            self._answer(control_result(error, frame.header.sequence))
            return False
        return True

    def _refuse_over_rate(self, kind: str, nonce: int) -> None:
        self._stats.rate_limited += 1
        now = trio.current_time()
        if now - self._last_refusal_reported < _REPORT_EVERY:
            return
        self._last_refusal_reported = now
        config = self._config
        error = RateLimited(
            f"{self.peer} sent control requests ({kind}) faster than {config.control_rate:g}/s "
            f"(burst {config.control_burst}); {self._stats.rate_limited} refused so far",
            limit=config.control_rate,
            peer=self.peer,
        )
        self._answer(control_result(error, nonce))
        self._report_error(error, peer=self.peer)
