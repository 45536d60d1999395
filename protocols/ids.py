"""Protocol ids, the wire protocol version and frame size limits of dndm v1."""

from typing import Final

__all__ = [
    "CONTROL_PROTOCOL_ID",
    "DATA_PROTOCOL_ID",
    "MAX_CONTROL_FRAME_SIZE",
    "MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
]

CONTROL_PROTOCOL_ID: Final[str] = "/dndm/ctl/1.0.0"
"""libp2p protocol id of the control stream; carries ``dndm.v1.ControlFrame`` frames."""

DATA_PROTOCOL_ID: Final[str] = "/dndm/data/1.0.0"
"""libp2p protocol id of the data stream; carries ``dndm.v1.DataFrame`` frames."""

PROTOCOL_VERSION: Final[int] = 1
"""Value of ``Hello.protocol_version`` sent by this implementation."""

MAX_FRAME_SIZE: Final[int] = 4 * 1024 * 1024
"""Largest serialized frame (4 MiB), excluding its varint length prefix.

Applies to ``DataFrame`` frames and to the uncompressed size of a compressed
``DataBatch``. A length prefix above the limit is rejected before allocating.
"""

MAX_CONTROL_FRAME_SIZE: Final[int] = 256 * 1024
"""Largest serialized ``ControlFrame`` (256 KiB), excluding its varint length prefix."""
