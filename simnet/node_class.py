"""Node classes: how a simulated node is reachable (:class:`Nat`), its uplink and the
connection limits its hosts get (:class:`NodeClass`).

A class is a frozen value checked on construction; :data:`PUBLIC` is the default class of
:meth:`simnet.net.SimNetwork.add_node`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Final

from protocols.errors import ConfigError
from protocols.validation import check_count

__all__ = ["PUBLIC", "Nat", "NodeClass"]


class Nat(Enum):
    """How a node is reachable from others."""

    #: Accepts every dial.
    PUBLIC = "public"
    #: Accepts a dial only from an address it has dialled before (an endpoint-independent
    #: mapping, as a full-cone NAT with port-restricted filtering behaves towards peers).
    CONE = "cone"
    #: Accepts no dial at all: reachable through relays only.
    SYMMETRIC = "symmetric"


@dataclass(frozen=True, slots=True)
class NodeClass:
    """A kind of node: reachability, uplink, and the connection limits its hosts get.

    :param name: a label for reports.
    :param nat: see :class:`Nat`.
    :param uplink: bytes per second the node can send (all connections together); ``inf``:
        unlimited.
    :param max_connections: ``ConnectionConfig.max_connections`` of the node's hosts.
    :param min_connections: ``ConnectionConfig.min_connections`` (inbound connections are
        capped at ``max_connections - min_connections``).
    :param low_watermark: ``ConnectionConfig.low_watermark``.
    :param high_watermark: ``ConnectionConfig.high_watermark``; pruning starts above it.
    """

    name: str = "public"
    nat: Nat = Nat.PUBLIC
    uplink: float = math.inf
    max_connections: int = 160
    min_connections: int = 8
    low_watermark: int = 32
    high_watermark: int = 96

    def __post_init__(self) -> None:
        if not isinstance(self.nat, Nat):
            raise ConfigError(f"nat must be a Nat, not {self.nat!r}")
        if not self.uplink > 0:
            raise ConfigError(f"uplink must be > 0 bytes/s, not {self.uplink!r}")
        for name in ("max_connections", "min_connections", "low_watermark", "high_watermark"):
            check_count(self, name, at_least=0)
        if not self.min_connections <= self.max_connections:
            raise ConfigError(f"class {self.name!r}: min_connections > max_connections")
        if not self.low_watermark <= self.high_watermark <= self.max_connections:
            raise ConfigError(
                f"class {self.name!r}: need low_watermark <= high_watermark <= max_connections"
            )


#: A dialable node with unlimited uplink and the limits simnet-notes §2.2 found realistic.
PUBLIC: Final = NodeClass()
