"""Routes: the names that link publishers and subscribers.

A **plain route** is ``FullProtoName@path``: the protobuf message's full name
(``robot.v1.Temperature``) and a dotted path (``robot.arm.temp``).  Two routes are the same
route when their *ids* are equal; the id of a plain route is its string.  ``Foo@x`` and
``Bar@x`` are different routes.

A **hashed route** is ``prefix#hash``.  The hash is SHA-256 of the plain route string, written in
URL-safe base64 without padding (43 characters); with a *secret* it is HMAC-SHA256 keyed by the
secret, so nobody who lacks the secret can compute it from a type and path they guess.  The prefix
is a dot-segment prefix of the path (``robot`` or ``robot.arm`` for ``robot.arm.temp``) that a
node may show without revealing the rest.  The id of a hashed route is the hash alone: the prefix
is a hint, not part of the identity, and the hash already fixes the full route.

Every constructor validates and raises :class:`~dndm_p2p.errors.RouteError` with a message that
names what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from abc import ABC, abstractmethod
from typing import Final

from google.protobuf.message import Message

from dndm_p2p.errors import RouteError, TypeMismatch

__all__ = [
    "HASH_LENGTH",
    "MAX_ROUTE_LENGTH",
    "HashedRoute",
    "PlainRoute",
    "Route",
    "message_full_name",
    "parse_route",
    "route_hash",
    "split_path",
]

#: Longest route string (plain or hashed) accepted anywhere, in characters.
MAX_ROUTE_LENGTH: Final = 1024
#: Length of the hash of a hashed route: 32 bytes in unpadded base64url.
HASH_LENGTH: Final = 43

_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_FORBIDDEN_IN_SEGMENT = re.compile(r"[@#*\s\x00-\x1f\x7f-\x9f]")
_HASH_CHARS = re.compile(r"[A-Za-z0-9_-]{43}")


def message_full_name(msg_type: type[Message]) -> str:
    """Return the protobuf full name of a message class (``robot.v1.Temperature``).

    Raises :class:`TypeMismatch` when ``msg_type`` is not a protobuf message class.
    """
    if not (isinstance(msg_type, type) and issubclass(msg_type, Message)):
        raise TypeMismatch(f"{msg_type!r} is not a protobuf message class")
    descriptor = getattr(msg_type, "DESCRIPTOR", None)
    if descriptor is None:
        raise TypeMismatch(f"{msg_type!r} is the abstract protobuf base, not a message class")
    name: str = descriptor.full_name
    return name


def split_path(path: str, *, what: str = "path") -> tuple[str, ...]:
    """Validate a dotted path and return its segments.

    A path is one or more non-empty segments separated by ``.``; a segment holds no ``@``,
    ``#``, ``*``, white space or control character.
    """
    if not isinstance(path, str):
        raise RouteError(f"{what} must be a string, not {type(path).__name__}")
    if not path:
        raise RouteError(f"{what} is empty", route=path)
    if len(path) > MAX_ROUTE_LENGTH:
        raise RouteError(f"{what} is longer than {MAX_ROUTE_LENGTH} characters", route=path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise RouteError(
            f"{what} {path!r} is not valid Unicode (lone surrogate)", route=path
        ) from None
    segments = tuple(path.split("."))
    for index, segment in enumerate(segments):
        if not segment:
            raise RouteError(
                f"{what} {path!r} has an empty segment at position {index}", route=path
            )
        bad = _FORBIDDEN_IN_SEGMENT.search(segment)
        if bad:
            raise RouteError(
                f"{what} {path!r} has {bad.group()!r} in segment {segment!r}; "
                "'@', '#', '*', white space and control characters are not allowed",
                route=path,
            )
    return segments


def _check_type_name(type_name: str) -> str:
    if not isinstance(type_name, str) or not _TYPE_NAME.fullmatch(type_name):
        raise RouteError(f"{type_name!r} is not a protobuf full name (like 'robot.v1.Temperature')")
    return type_name


def route_hash(plain_route: str, secret: bytes | None = None) -> str:
    """Hash a plain route string: SHA-256, or HMAC-SHA256 keyed by ``secret``, in base64url."""
    data = plain_route.encode()
    digest = (
        hmac.new(secret, data, hashlib.sha256).digest()
        if secret is not None
        else hashlib.sha256(data).digest()
    )
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_hash(value: str) -> str:
    if not _HASH_CHARS.fullmatch(value):
        raise RouteError(
            f"hash {value!r} is not {HASH_LENGTH} characters of URL-safe base64 without padding"
        )
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regex rules this out
        raise RouteError(f"hash {value!r} is not valid base64url") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != value:
        raise RouteError(f"hash {value!r} is not the canonical encoding of 32 bytes")
    return value


class Route(ABC):
    """A route: the identity that links intents to interests.

    Routes are immutable and hashable; equality and hashing use :attr:`id` only.  A route may be
    *bound* to a message class (:attr:`msg_type`); routes parsed from strings are unbound.
    """

    __slots__ = ("_id", "_msg_type", "_text")

    _id: str
    _text: str
    _msg_type: type[Message] | None

    @property
    def id(self) -> str:
        """The identity key: the route string for plain routes, the hash for hashed ones."""
        return self._id

    @property
    def msg_type(self) -> type[Message] | None:
        """The protobuf message class this route carries, when known."""
        return self._msg_type

    @property
    def is_hashed(self) -> bool:
        """True for hashed routes (``prefix#hash``)."""
        return isinstance(self, HashedRoute)

    @abstractmethod
    def bind(self, msg_type: type[Message]) -> Route:
        """Return this route bound to ``msg_type``, checking that the type fits the route."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Route) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"


class PlainRoute(Route):
    """A plain route ``FullProtoName@path``."""

    __slots__ = ("_path", "_segments", "_type_name")

    def __init__(self, type_name: str, path: str, msg_type: type[Message] | None = None) -> None:
        """Build and validate a plain route from a protobuf full name and a dotted path."""
        self._type_name = _check_type_name(type_name)
        self._segments = split_path(path)
        self._path = path
        text = f"{type_name}@{path}"
        if len(text) > MAX_ROUTE_LENGTH:
            raise RouteError(f"route {text[:40]!r}... is longer than {MAX_ROUTE_LENGTH} characters")
        self._id = self._text = text
        if msg_type is not None and message_full_name(msg_type) != type_name:
            raise TypeMismatch(
                f"{msg_type.__qualname__} is {message_full_name(msg_type)!r}, "
                f"but route {text!r} carries {type_name!r}"
            )
        self._msg_type = msg_type

    @classmethod
    def of(cls, msg_type: type[Message], path: str) -> PlainRoute:
        """The plain route for a message class on a dotted path."""
        return cls(message_full_name(msg_type), path, msg_type)

    @property
    def type_name(self) -> str:
        """The protobuf full name of the route's message type."""
        return self._type_name

    @property
    def path(self) -> str:
        """The dotted path."""
        return self._path

    @property
    def segments(self) -> tuple[str, ...]:
        """The path's segments."""
        return self._segments

    def bind(self, msg_type: type[Message]) -> PlainRoute:
        """Return this route bound to ``msg_type``; its full name must be the route's type."""
        if self._msg_type is msg_type:
            return self
        return PlainRoute(self._type_name, self._path, msg_type)

    def hashed(self, prefix: str | None = None, secret: bytes | None = None) -> HashedRoute:
        """The hashed form of this route (see :meth:`HashedRoute.of`)."""
        return HashedRoute.from_plain(self, prefix=prefix, secret=secret)


class HashedRoute(Route):
    """A hashed route ``prefix#hash``, hiding the type and the path behind a hash."""

    __slots__ = ("_prefix",)

    def __init__(self, prefix: str, digest: str, msg_type: type[Message] | None = None) -> None:
        """Build a hashed route from a prefix and an already computed hash.

        The prefix may be empty (show nothing of the path); otherwise it is a valid dotted path.
        """
        if prefix:
            split_path(prefix, what="prefix")
        self._prefix = prefix
        self._id = _check_hash(digest)
        self._text = f"{prefix}#{digest}"
        if len(self._text) > MAX_ROUTE_LENGTH:
            raise RouteError(f"hashed route is longer than {MAX_ROUTE_LENGTH} characters")
        self._msg_type = msg_type

    @classmethod
    def of(
        cls,
        msg_type: type[Message],
        path: str,
        prefix: str | None = None,
        secret: bytes | None = None,
    ) -> HashedRoute:
        """The hashed route of ``msg_type`` on ``path``.

        ``prefix`` defaults to the first segment of ``path``; pass ``""`` to show nothing.  It must
        be a dot-segment prefix of the path (``robot.arm`` for ``robot.arm.temp``, never ``rob``).
        With ``secret`` the hash is an HMAC, so only holders of the secret can find the route.
        """
        return cls.from_plain(PlainRoute.of(msg_type, path), prefix=prefix, secret=secret)

    @classmethod
    def from_plain(
        cls, plain: PlainRoute, prefix: str | None = None, secret: bytes | None = None
    ) -> HashedRoute:
        """The hashed form of a plain route (see :meth:`of`)."""
        if prefix is None:
            prefix = plain.segments[0]
        if prefix:
            prefix_segments = split_path(prefix, what="prefix")
            if plain.segments[: len(prefix_segments)] != prefix_segments:
                raise RouteError(
                    f"prefix {prefix!r} is not a dot-segment prefix of path {plain.path!r}"
                )
        if secret is not None and not isinstance(secret, bytes):
            raise RouteError("secret must be bytes")
        return cls(prefix, route_hash(str(plain), secret), plain.msg_type)

    @property
    def prefix(self) -> str:
        """The visible dot-segment prefix of the hidden path (may be empty)."""
        return self._prefix

    @property
    def digest(self) -> str:
        """The hash (the route's id)."""
        return self._id

    def bind(self, msg_type: type[Message]) -> HashedRoute:
        """Return this route bound to ``msg_type``.

        The type cannot be checked against the hash; use :meth:`verify` when the path is known.
        """
        message_full_name(msg_type)
        if self._msg_type is msg_type:
            return self
        return HashedRoute(self._prefix, self._id, msg_type)

    def verify(self, msg_type: type[Message], path: str, secret: bytes | None = None) -> bool:
        """True when this hash is the hash of ``msg_type`` on ``path`` (with ``secret``)."""
        expected = route_hash(str(PlainRoute.of(msg_type, path)), secret)
        return hmac.compare_digest(expected, self._id)


def parse_route(text: str) -> PlainRoute | HashedRoute:
    """Parse ``Type@path`` or ``prefix#hash`` into an unbound route.

    Raises :class:`RouteError` naming the problem: no separator, both separators, an empty type or
    path, a malformed hash, a bad segment.
    """
    if not isinstance(text, str):
        raise RouteError(f"a route must be a string, not {type(text).__name__}")
    if len(text) > MAX_ROUTE_LENGTH:
        raise RouteError(f"route is longer than {MAX_ROUTE_LENGTH} characters", route=text)
    if "@" in text:
        type_name, _, path = text.partition("@")
        if "@" in path:
            raise RouteError(f"route {text!r} has more than one '@'", route=text)
        if "#" in text:
            raise RouteError(f"route {text!r} mixes '@' (plain) and '#' (hashed)", route=text)
        if not type_name:
            raise RouteError(f"route {text!r} has an empty type name before '@'", route=text)
        return PlainRoute(type_name, path)
    if "#" in text:
        prefix, _, digest = text.partition("#")
        if "#" in digest:
            raise RouteError(f"route {text!r} has more than one '#'", route=text)
        return HashedRoute(prefix, digest)
    raise RouteError(f"{text!r} is not a route: expected 'Type@path' or 'prefix#hash'", route=text)
