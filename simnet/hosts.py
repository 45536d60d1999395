"""Real py-libp2p hosts on a :class:`~simnet.net.SimNetwork` node.

Built like DNDM's own hosts (:mod:`dndm_p2p.host.build`): one security protocol and one muxer, no
metrics, mDNS, UPnP or bootstrap, the auto-connector stopped once the host runs, and the same
py-libp2p workarounds (:mod:`protocols.libp2p_fixes.host`).  What differs for simulation:

* the transport is the node's :class:`~simnet.net.SimTransport`;
* security is Noise or plaintext and the muxer yamux or mplex (:class:`SimHostOptions`):
  plaintext and mplex cost far less CPU per connection and per idle second, which is what
  limits the size of an emulation (simnet-notes §2.2); mplex is the full-duplex
  :class:`~protocols.libp2p_fixes.mplex.DuplexMplex`, as DNDM's links need;
* connection limits come from the node's class (:func:`connection_config`, and the resource
  manager sized to match), since py-libp2p's defaults turn a small mesh into a full mesh.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TMuxerOptions, TProtocol, TSecurityOptions
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.swarm import Swarm
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from protocols.libp2p_fixes.host import (
    close_host,
    keep_new_connections_on_close_peer,
    release_inbound_slots,
    size_resource_manager,
)
from protocols.libp2p_fixes.mplex import DuplexMplex
from protocols.libp2p_fixes.noise import WholeWriteNoise
from protocols.validation import check_choice, check_seconds
from simnet.net import NodeClass, SimNetwork, SimNode

__all__ = [
    "MUXERS",
    "SECURITIES",
    "SimHostOptions",
    "build_sim_host",
    "connection_config",
    "running_sim_host",
]

#: Security protocols a simulated host can use.
SECURITIES: Final = ("noise", "plaintext")
#: Stream muxers a simulated host can use.
MUXERS: Final = ("yamux", "mplex")


@dataclass(frozen=True, slots=True)
class SimHostOptions:
    """How simulated hosts are built.

    :param security: ``"noise"`` (as DNDM nodes) or ``"plaintext"`` (cheaper).
    :param muxer: ``"yamux"`` (as DNDM nodes) or ``"mplex"`` (cheaper).
    :param negotiate_timeout: seconds for each connection upgrade and stream negotiation
        (virtual seconds under a mock clock).
    :param close_timeout: seconds allowed for closing a host on exit.
    """

    security: str = "plaintext"
    muxer: str = "mplex"
    negotiate_timeout: float = 10.0
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_choice(self, "security", SECURITIES)
        check_choice(self, "muxer", MUXERS)
        check_seconds(self, "negotiate_timeout", at_least=1)
        check_seconds(self, "close_timeout", above=0)


def connection_config(node_class: NodeClass, negotiate_timeout: float = 10.0) -> ConnectionConfig:
    """py-libp2p connection limits for a node of ``node_class`` (one connection per peer)."""
    return ConnectionConfig(
        max_connections=node_class.max_connections,
        min_connections=node_class.min_connections,
        low_watermark=node_class.low_watermark,
        high_watermark=node_class.high_watermark,
        max_connections_per_peer=1,
        inbound_upgrade_timeout=negotiate_timeout,
        outbound_upgrade_timeout=negotiate_timeout,
        inbound_stream_protocol_negotiation_timeout=negotiate_timeout,
        outbound_stream_protocol_negotiation_timeout=negotiate_timeout,
    )


def build_sim_host(
    network: SimNetwork, node: SimNode, key_pair: KeyPair, options: SimHostOptions | None = None
) -> IHost:
    """Build (not start) a py-libp2p host with ``key_pair``'s identity on ``node``."""
    options = options if options is not None else SimHostOptions()
    security: TSecurityOptions
    if options.security == "noise":
        noise = WholeWriteNoise(key_pair, new_x25519_key_pair().private_key)
        security = {TProtocol(NOISE_PROTOCOL_ID): noise}
    else:
        security = {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}
    muxer: TMuxerOptions
    if options.muxer == "yamux":
        muxer = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    else:
        muxer = {TProtocol(MPLEX_PROTOCOL_ID): DuplexMplex}
    host = new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt=muxer,
        transports=[network.transport(node)],
        enable_mDNS=False,
        enable_upnp=False,
        enable_metrics=False,
        bootstrap=None,
        negotiate_timeout=math.ceil(options.negotiate_timeout),
        connection_config=connection_config(node.node_class, options.negotiate_timeout),
    )
    swarm = host.get_network()
    if isinstance(swarm, Swarm):
        swarm.retry_config = RetryConfig(max_retries=0)
    release_inbound_slots(host)
    keep_new_connections_on_close_peer(host)
    size_resource_manager(host, node.node_class.max_connections)
    return host


@asynccontextmanager
async def running_sim_host(
    network: SimNetwork, node: SimNode, key_pair: KeyPair, options: SimHostOptions | None = None
) -> AsyncIterator[IHost]:
    """A host on ``node``, listening on its default port, auto-connector stopped; closed on exit."""
    options = options if options is not None else SimHostOptions()
    host = build_sim_host(network, node, key_pair, options)
    async with host.run([node.listen_addr()]):
        try:
            swarm = host.get_network()
            if isinstance(swarm, Swarm):
                await swarm.auto_connector.stop()
            yield host
        finally:
            await close_host(host, grace=options.close_timeout)
