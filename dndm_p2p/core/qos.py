"""Quality of service: what a subscriber's queue holds and what happens when it is full."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from dndm_p2p.errors import ConfigError

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "NoInterestPolicy",
    "Overflow",
    "QoS",
    "SlowSubscriberMode",
]

#: Queue depth of an interest when none is given.
DEFAULT_DEPTH: Final = 128
#: Largest queue depth accepted, so a typo cannot reserve gigabytes.
MAX_DEPTH: Final = 1 << 20

#: What an intent does with a message when nobody is subscribed: drop it (and count it) or
#: raise :class:`~dndm_p2p.errors.NoInterest`.
NoInterestPolicy = Literal["drop", "raise"]


class Overflow(StrEnum):
    """What happens when a message arrives at a full subscriber queue."""

    #: Evict the oldest queued message: the subscriber keeps the latest (the default, for streams).
    DROP_OLDEST = "drop_oldest"
    #: Discard the arriving message: the subscriber keeps what it already has.
    DROP_NEWEST = "drop_newest"
    #: Make the producer wait until the subscriber has room (lossless, couples the two).
    BLOCK = "block"


class SlowSubscriberMode(StrEnum):
    """What a publisher does with a remote subscriber that does not keep up (chosen per route
    by the publisher; the subscriber's own QoS only governs its side of the link)."""

    #: Drop messages for that subscriber only (counted, and reported to it in the next batch).
    DROP = "drop"
    #: Drop for it as long as it lags, and evict it once it has lagged for the deadline.
    EVICT = "evict"


@dataclass(frozen=True, slots=True)
class QoS:
    """Per-interest delivery settings.

    ``depth`` is the queue capacity in messages; ``overflow`` the policy when it is full;
    ``reliable`` asks remote links for sequence numbers, acks and retransmission, and requires
    ``overflow='block'`` (nothing may be dropped anywhere on the way).
    """

    depth: int = DEFAULT_DEPTH
    overflow: Overflow = Overflow.DROP_OLDEST
    reliable: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int):
            raise ConfigError(f"depth must be an int, not {type(self.depth).__name__}")
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ConfigError(f"depth must be between 1 and {MAX_DEPTH}, not {self.depth}")
        try:
            object.__setattr__(self, "overflow", Overflow(self.overflow))
        except ValueError:
            choices = ", ".join(repr(o.value) for o in Overflow)
            raise ConfigError(f"overflow must be one of {choices}, not {self.overflow!r}") from None
        if not isinstance(self.reliable, bool):
            raise ConfigError("reliable must be a bool")
        if self.reliable and self.overflow is not Overflow.BLOCK:
            raise ConfigError(
                "reliable delivery loses nothing, so it needs overflow='block', "
                f"not {self.overflow.value!r}"
            )

    @classmethod
    def reliable_with(cls, depth: int = DEFAULT_DEPTH) -> QoS:
        """Reliable delivery: acknowledged, resumable, and lossless (``block``) locally."""
        return cls(depth, Overflow.BLOCK, True)
