"""Interest patterns: one subscription for many routes.

A pattern is a dotted path whose segments may be wildcards: ``*`` matches exactly one segment and
``**`` matches any number of segments, zero included.  Matching is segment by segment, never by
raw string prefix: ``robot.sensors.**`` matches ``robot.sensors`` and ``robot.sensors.arm.temp``
but never ``robot.sensorsX.temp`` (the Go original's prefix match did).

A pattern interest matches plain routes of its message type only; hashed routes hide their path
and are matched by their hash alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from dndm_p2p.core.route import MAX_ROUTE_LENGTH, split_path
from dndm_p2p.errors import RouteError

__all__ = ["Pattern", "is_pattern"]

_ONE = "*"
_ANY = "**"


def is_pattern(text: str) -> bool:
    """True when ``text`` holds a wildcard and so names a pattern, not a single path."""
    return "*" in text


class Pattern:
    """A validated path pattern with ``*`` (one segment) and ``**`` (any number) wildcards."""

    __slots__ = ("_segments", "_text")

    def __init__(self, text: str) -> None:
        """Parse and validate ``text``; wildcards must be whole segments."""
        if not isinstance(text, str):
            raise RouteError(f"a pattern must be a string, not {type(text).__name__}")
        if not text:
            raise RouteError("pattern is empty", route=text)
        if len(text) > MAX_ROUTE_LENGTH:
            raise RouteError(f"pattern is longer than {MAX_ROUTE_LENGTH} characters", route=text)
        segments = text.split(".")
        for index, segment in enumerate(segments):
            if segment in (_ONE, _ANY):
                continue
            if "*" in segment:
                raise RouteError(
                    f"pattern {text!r}: '*' must be a whole segment ('*' or '**'), "
                    f"not part of {segment!r}",
                    route=text,
                )
            if not segment:
                raise RouteError(
                    f"pattern {text!r} has an empty segment at position {index}", route=text
                )
            split_path(segment, what=f"pattern {text!r} segment")
        # Collapse runs of '**': 'a.**.**.b' means the same as 'a.**.b'.
        collapsed: list[str] = []
        for segment in segments:
            if segment == _ANY and collapsed and collapsed[-1] == _ANY:
                continue
            collapsed.append(segment)
        self._segments = tuple(collapsed)
        self._text = text

    @property
    def segments(self) -> tuple[str, ...]:
        """The pattern's segments (runs of ``**`` collapsed to one)."""
        return self._segments

    @property
    def text(self) -> str:
        """The pattern as written."""
        return self._text

    def matches(self, path: str | Sequence[str]) -> bool:
        """True when the dotted ``path`` (or its segment sequence) matches this pattern."""
        segments = path.split(".") if isinstance(path, str) else path
        pattern = self._segments
        i = j = 0
        star = -1  # position of the last '**' seen in the pattern
        mark = 0  # position in the path that the last '**' has swallowed up to
        n, m = len(segments), len(pattern)
        while i < n:
            if j < m and pattern[j] != _ANY and (pattern[j] == _ONE or pattern[j] == segments[i]):
                i += 1
                j += 1
            elif j < m and pattern[j] == _ANY:
                star, mark = j, i
                j += 1
            elif star >= 0:
                # Let the last '**' swallow one more segment, and retry after it.
                mark += 1
                i, j = mark, star + 1
            else:
                return False
        while j < m and pattern[j] == _ANY:
            j += 1
        return j == m

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other._segments == self._segments

    def __hash__(self) -> int:
        return hash(self._segments)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Pattern({self._text!r})"
