"""Adverts: how a node tells its peers which intents and interests it holds.

An advert names one handle (by its process-local id) and its route, or, for a pattern interest,
its pattern and message type.  Peers receive the full set in the hello and then incremental,
batched register/unregister adverts.  Incoming adverts are validated here; anything malformed is
a :class:`~dndm_p2p.errors.ProtocolError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.pattern import Pattern
from dndm_p2p.core.qos import Overflow, QoS
from dndm_p2p.core.route import MAX_ROUTE_LENGTH, PlainRoute, Route, message_full_name, parse_route
from dndm_p2p.errors import ConfigError, ProtocolError, RouteError
from protocols.v1 import advert_pb2, common_pb2

__all__ = ["RemoteAdvert", "advert_for", "parse_advert", "qos_from_wire", "qos_to_wire"]

_OVERFLOW_TO_WIRE = {
    Overflow.DROP_OLDEST: common_pb2.QoS.DROP_OLDEST,
    Overflow.DROP_NEWEST: common_pb2.QoS.DROP_NEWEST,
    Overflow.BLOCK: common_pb2.QoS.BLOCK,
}
_OVERFLOW_FROM_WIRE = {wire: local for local, wire in _OVERFLOW_TO_WIRE.items()}


def qos_to_wire(qos: QoS) -> common_pb2.QoS:
    """Encode a QoS for the wire."""
    return common_pb2.QoS(
        depth=qos.depth, overflow=_OVERFLOW_TO_WIRE[qos.overflow], reliable=qos.reliable
    )


def qos_from_wire(wire: common_pb2.QoS) -> QoS:
    """Decode and validate a QoS from the wire (a zero depth means the default)."""
    try:
        return QoS(
            depth=wire.depth or QoS().depth,
            overflow=_OVERFLOW_FROM_WIRE[wire.overflow],
            reliable=wire.reliable,
        )
    except (ConfigError, KeyError) as exc:
        raise ProtocolError(f"invalid QoS from peer: {exc}") from None


@dataclass(frozen=True, slots=True)
class RemoteAdvert:
    """A validated advert received from a peer."""

    kind: int
    handle_id: int
    #: The concrete route (intents and exact interests), else ``None``.
    route: Route | None
    #: The pattern of a pattern interest, else ``None``.
    pattern: Pattern | None
    #: The message type's full name; empty for hashed routes, which hide it.
    type_name: str
    qos: QoS
    register: bool
    sequence: int
    ttl_ms: int

    @property
    def is_intent(self) -> bool:
        """True for a publisher's advert."""
        return self.kind == common_pb2.ROUTE_KIND_INTENT

    def matches(self, route: Route) -> bool:
        """True when this (interest) advert wants ``route``."""
        if self.route is not None:
            return self.route == route
        return (
            self.pattern is not None
            and isinstance(route, PlainRoute)
            and route.type_name == self.type_name
            and self.pattern.matches(route.segments)
        )


def advert_for(
    handle: Intent[Any] | Interest[Any], *, register: bool, sequence: int, ttl_ms: int = 0
) -> advert_pb2.Advert:
    """The advert of a local handle (register, or unregister when ``register`` is false)."""
    if isinstance(handle, Intent):
        return advert_pb2.Advert(
            route=str(handle.route),
            kind=common_pb2.ROUTE_KIND_INTENT,
            register=register,
            ttl_ms=ttl_ms,
            sequence=sequence,
            handle_id=handle.handle_id,
        )
    type_name = message_full_name(handle.msg_type)
    if handle.route is not None:
        route_text = str(handle.route)
        msg_type = "" if handle.route.is_hashed else type_name
    else:
        route_text = str(handle.pattern)
        msg_type = type_name
    return advert_pb2.Advert(
        route=route_text,
        msg_type=msg_type,
        kind=common_pb2.ROUTE_KIND_INTEREST,
        register=register,
        ttl_ms=ttl_ms,
        sequence=sequence,
        qos=qos_to_wire(handle.qos),
        handle_id=handle.handle_id,
    )


def parse_advert(advert: advert_pb2.Advert) -> RemoteAdvert:
    """Validate an advert from a peer; raise :class:`ProtocolError` naming what is wrong."""
    if advert.kind not in (common_pb2.ROUTE_KIND_INTENT, common_pb2.ROUTE_KIND_INTEREST):
        raise ProtocolError(f"advert for {advert.route[:80]!r} has no valid kind ({advert.kind})")
    if not advert.route or len(advert.route) > MAX_ROUTE_LENGTH:
        raise ProtocolError("advert has an empty or oversize route")
    route: Route | None = None
    pattern: Pattern | None = None
    try:
        if "@" in advert.route or "#" in advert.route:
            route = parse_route(advert.route)
            type_name = route.type_name if isinstance(route, PlainRoute) else ""
            if advert.msg_type and advert.msg_type != type_name:
                raise ProtocolError(f"advert for {advert.route!r} names type {advert.msg_type!r}")
        elif advert.kind == common_pb2.ROUTE_KIND_INTEREST and advert.msg_type:
            pattern = Pattern(advert.route)
            PlainRoute(advert.msg_type, "x")  # validates the type name
            type_name = advert.msg_type
        else:
            raise ProtocolError(
                f"advert {advert.route[:80]!r} is neither a route nor a pattern with a type"
            )
    except RouteError as exc:
        raise ProtocolError(f"advert has an invalid route: {exc}") from None
    return RemoteAdvert(
        kind=advert.kind,
        handle_id=advert.handle_id,
        route=route,
        pattern=pattern,
        type_name=type_name,
        qos=qos_from_wire(advert.qos),
        register=advert.register,
        sequence=advert.sequence,
        ttl_ms=advert.ttl_ms,
    )
