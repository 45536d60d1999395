"""Advert namespaces: which GossipSub topic carries the adverts of a route or pattern.

A namespace's topic is :func:`topic_for` (``/dndm/adverts/1.0.0/<namespace>``).

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
from dndm_p2p.errors import ConfigError

__all__ = [
    "HIDDEN_NAMESPACE",
    "MAX_NAMESPACE_LENGTH",
    "TOPIC_PREFIX",
    "check_namespace",
    "namespace_of",
    "topic_for",
    "topic_namespace",
]

#: The namespace of hashed routes that show no prefix.
HIDDEN_NAMESPACE: Final = "#"
#: Every advert topic starts with this; the namespace follows.
TOPIC_PREFIX = "/dndm/adverts/1.0.0/"
#: The longest namespace accepted.
MAX_NAMESPACE_LENGTH = 200


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


def topic_for(namespace: str) -> str:
    """The GossipSub topic of ``namespace``: ``/dndm/adverts/1.0.0/<namespace>``.

    :raises ConfigError: ``namespace`` is empty, longer than 200 characters, or holds a ``/``,
        whitespace or a control character.
    """
    check_namespace(namespace)
    return TOPIC_PREFIX + namespace


def topic_namespace(topic: str) -> str | None:
    """The namespace of an advert topic, or None if ``topic`` is not a valid one."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    namespace = topic[len(TOPIC_PREFIX) :]
    try:
        check_namespace(namespace)
    except ConfigError:
        return None
    return namespace


def check_namespace(namespace: object) -> None:
    """Raise :class:`ConfigError` unless ``namespace`` can name a topic (see :func:`topic_for`)."""
    if not isinstance(namespace, str):
        raise ConfigError(f"a namespace is a string, not {type(namespace).__name__}")
    if not 0 < len(namespace) <= MAX_NAMESPACE_LENGTH:
        raise ConfigError(f"a namespace has 1 to {MAX_NAMESPACE_LENGTH} characters")
    if "/" in namespace or any(char.isspace() or not char.isprintable() for char in namespace):
        raise ConfigError(
            f"namespace {namespace[:80]!r} holds a '/', whitespace or a control character"
        )
