"""What a publisher does with remote subscribers that do not keep up, and what it counted.

The publisher owns its side of every remote link: whatever a subscriber asks for (its depth,
``block``, ``reliable``), its queue at the publisher never makes a producer wait.  A route's
:class:`SlowSubscriberPolicy` says what a lagging subscriber gets instead: messages dropped for
it alone (``drop``), or dropped and, once it has lagged for the deadline, the link evicted
(``evict``).  A reliable link cannot drop: it holds what it must resend within a bound, and is
given up (evicted with ``SLOW_SUBSCRIBER``) when it would need more.  Every outcome is counted
in :class:`SlowSubscriberStats` and reported as a node event.
"""

from __future__ import annotations

from dataclasses import dataclass

from dndm_p2p.core.qos import SlowSubscriberMode
from protocols.validation import check_count, check_seconds

__all__ = ["SlowSubscriberPolicy", "SlowSubscriberStats"]


@dataclass(frozen=True, slots=True)
class SlowSubscriberPolicy:
    """A route's treatment of its remote subscribers.

    ``mode``: drop for a lagging subscriber, or evict it after ``deadline`` seconds of lag.
    ``queue_depth``: most messages queued for one unreliable link (a dropping subscriber's
    own depth, capped; all of it for a subscriber that asked for ``block``).
    ``reliable_depth``: most messages a reliable link queues, and most it keeps
    unacknowledged; one more and it is given up.
    """

    mode: SlowSubscriberMode = SlowSubscriberMode.DROP
    deadline: float = 2.0
    queue_depth: int = 16384
    reliable_depth: int = 16384

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", SlowSubscriberMode(self.mode))
        check_seconds(self, "deadline", above=0)
        check_count(self, "queue_depth", at_least=1, at_most=1 << 20)
        check_count(self, "reliable_depth", at_least=1, at_most=1 << 20)


@dataclass(slots=True)
class SlowSubscriberStats:
    """A node's counters of lagging remote subscribers (a snapshot when read from the node).

    ``dropped``: messages dropped for lagging unreliable subscribers; ``evicted``: links
    evicted after lagging past their route's deadline; ``reliable_given_up``: reliable links
    given up because they would have had to hold more than their bound.
    """

    dropped: int = 0
    evicted: int = 0
    reliable_given_up: int = 0
