"""Advert namespaces: which GossipSub topic carries the adverts of a route or pattern.

A route's namespace is the first ``depth`` segments of its path (``robot`` for
``robot.arm.temp`` at depth 1).  A hashed route shows only its prefix, so its namespace comes from
the prefix; a hashed route without a prefix lives in the namespace :data:`HIDDEN_NAMESPACE`,
which says nothing about it.  A pattern interest learns from the namespace its first ``depth``
literal segments name; a pattern with a wildcard among them (``*.temp``) names no namespace and
cannot be discovered through gossip (it still links with peers found otherwise).
"""

from __future__ import annotations

from typing import Final

from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.route import HashedRoute, PlainRoute, Route

__all__ = ["HIDDEN_NAMESPACE", "namespace_of"]

#: The namespace of hashed routes that show no prefix.
HIDDEN_NAMESPACE: Final = "#"


def namespace_of(target: Route | Pattern, depth: int = 1) -> str | None:
    """The advert namespace of a route or pattern, or ``None`` when a pattern names none."""
    if isinstance(target, PlainRoute):
        segments: tuple[str, ...] = target.segments
    elif isinstance(target, HashedRoute):
        if not target.prefix:
            return HIDDEN_NAMESPACE
        segments = tuple(target.prefix.split("."))
    elif isinstance(target, Pattern):
        literal = []
        for segment in target.segments[:depth]:
            if "*" in segment:
                return None
            literal.append(segment)
        segments = tuple(literal)
    else:
        raise TypeError(f"not a route or pattern: {target!r}")
    return ".".join(segments[:depth])
