"""The node that ``dndm node``, ``pub`` and ``sub`` run: its configuration from their options,
and SIGINT/SIGTERM turned into a clean stop."""

from __future__ import annotations

import argparse
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from dndm_p2p.cli.options import (
    ADDRESS_BOOK_SUFFIX,
    BOOTSTRAP_MAX_CONNECTIONS,
    DEFAULT_MDNS_INTERFACE,
)
from dndm_p2p.cli.runtime import default_admin_socket
from dndm_p2p.cli.signals import STOP_SIGNALS, early_stop
from dndm_p2p.config import DhtConfig, GossipConfig, MdnsConfig, NodeConfig
from dndm_p2p.errors import ConfigError
from dndm_p2p.nurseries import open_owned_nursery

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node

# The node (and py-libp2p under it) is imported only when a node starts: it takes a good part
# of a second, during which a signal would kill the process without a clean stop.

__all__ = ["Stop", "node_config", "running_node"]


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The node configuration that the options of ``dndm node``, ``pub`` or ``sub`` ask for."""
    options: dict[str, Any] = {}
    if args.listen:
        options["listen"] = tuple(args.listen)
    is_node = args.command == "node"
    bootstrap = tuple(args.bootstrap_peer)
    discovery = is_node or bool(bootstrap)
    dht = discovery if args.dht is None else args.dht
    gossip = discovery if args.gossip is None else args.gossip
    relay_all = False
    if is_node:
        if args.bootstrap:
            if not dht:
                raise ConfigError("--bootstrap runs a DHT server: it cannot go with --no-dht")
            relay_all = True
            options["max_connections"] = BOOTSTRAP_MAX_CONNECTIONS
        if args.mdns:
            interfaces = tuple(args.mdns_interface or (DEFAULT_MDNS_INTERFACE,))
            options["mdns"] = MdnsConfig(interfaces=interfaces)
        book = args.address_book
        if book is None and args.key is not None:
            book = args.key.with_name(args.key.name + ADDRESS_BOOK_SUFFIX)
        options["address_book"] = book
        options["admin_socket"] = args.admin_socket or default_admin_socket(args.key, args.name)
    return NodeConfig(
        name=args.name,
        key_file=args.key,
        peers=tuple(args.peer),
        quic=args.quic,
        bootstrap=bootstrap,
        dht=DhtConfig() if dht else None,
        gossip=GossipConfig(relay_all=relay_all) if gossip else None,
        nat=_nat_config(args),
        **options,
    )


def _nat_config(args: argparse.Namespace) -> Any:
    """The NatConfig the NAT options ask for, or None when NAT traversal is off."""
    if not (args.nat or args.relay or args.relay_service or args.upnp):
        return None
    from nat import NatConfig

    return NatConfig(
        relays=tuple(args.relay),
        relay_service=args.relay_service,
        relay_client="never" if args.relay_service else "auto",
        hole_punching=args.hole_punching,
        upnp=args.upnp,
    )


@dataclass
class Stop:
    """Which signal stopped the command, if one did."""

    signal: str | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@asynccontextmanager
async def running_node(args: argparse.Namespace) -> AsyncIterator[tuple[Node, Stop]]:
    """A node for the command's options, with SIGINT/SIGTERM turned into a clean stop.

    The block runs in a cancel scope that the first signal cancels (at once if one came while
    the command was starting up); ``stop.signal`` then names the signal.
    """
    config = node_config(args)
    from dndm_p2p.node.node import Node

    stop = Stop()
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        early = early_stop()
        if early is not None:  # a signal came while starting up: stop at once
            stop.signal = early
            stop.scope.cancel()
        async with Node(config) as node, open_owned_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    stop.signal = signal.Signals(signum).name
                    stop.scope.cancel()
                    return

            nursery.start_soon(watch)
            with stop.scope:
                yield node, stop
            nursery.cancel_scope.cancel()
