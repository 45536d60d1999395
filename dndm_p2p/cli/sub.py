"""``dndm sub``: print the messages of a route or pattern as JSON lines on stdout.

Each line holds ``route``, ``sender``, ``latency_us`` and ``payload``; status lines
(``listening``, ``linked``, peer events, ``done``) are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import trio
import trio.testing
from google.protobuf.message import Message

from dndm_p2p.cli.events import print_events, print_links
from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.msgtypes import latency_us, message_to_dict
from dndm_p2p.cli.options import (
    add_discovery_options,
    add_nat_options,
    add_node_options,
    add_type_options,
    check_route,
    message_type,
    positive_float,
    positive_int,
)
from dndm_p2p.cli.output import JsonLines
from dndm_p2p.cli.plugins import Commands, Handler
from dndm_p2p.cli.running import running_node
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkInfo
from dndm_p2p.core.qos import DEFAULT_DEPTH, Overflow
from dndm_p2p.errors import ConfigError, Unavailable
from dndm_p2p.nurseries import open_owned_nursery

__all__ = ["register"]

#: Longest a subscriber waits for its last acknowledgements to go out before it leaves.
_SETTLE_LIMIT = 1.0


def register(commands: Commands) -> Handler:
    """Add ``dndm sub`` to ``commands``; returns its handler."""
    sub = commands.add_parser("sub", help="print the messages of a route or pattern as JSON lines")
    sub.add_argument(
        "route",
        metavar="ROUTE_OR_PATTERN",
        help="path, Type@path, prefix#hash, or a pattern with * and ** (robot.*.temp)",
    )
    add_type_options(sub)
    add_node_options(sub)
    add_discovery_options(sub, node=False)
    add_nat_options(sub)
    sub.add_argument("--count", type=positive_int, metavar="N", help="exit after N messages")
    sub.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="with --count: exit 3 if they have not all arrived after SECONDS",
    )
    sub.add_argument(
        "--reliable",
        action="store_true",
        help="acknowledged, lossless delivery that resumes across reconnections",
    )
    sub.add_argument(
        "--depth",
        type=positive_int,
        metavar="N",
        help=f"queue depth in messages (default {DEFAULT_DEPTH})",
    )
    sub.add_argument(
        "--overflow",
        choices=[policy.value for policy in Overflow],
        help="what a full queue does (default drop_oldest; block with --reliable)",
    )
    return _run


def _run(args: argparse.Namespace) -> int:
    msg_type = message_type(args)
    check_route(args.route, msg_type, allow_pattern=True)
    if args.reliable and args.overflow not in (None, Overflow.BLOCK.value):
        raise ConfigError("--reliable needs --overflow block (nothing may be dropped)")
    return trio.run(_run_sub, args, msg_type)


async def _run_sub(args: argparse.Namespace, msg_type: type[Message]) -> int:
    status = JsonLines(sys.stderr)
    out = JsonLines(sys.stdout)
    received = 0
    options: dict[str, Any] = {"depth": args.depth, "overflow": args.overflow}
    if args.reliable:
        options["reliable"] = True
    async with running_node(args) as (node, stop), node.events() as events:
        status.write({"event": "listening", "peer": node.peer_id, "addrs": node.addrs})
        interest = node.subscribe(args.route, msg_type, **options)
        async with interest, open_owned_nursery() as tasks:
            tasks.start_soon(print_events, node, events, status)
            tasks.start_soon(print_links, interest, node, status)
            count: int | None = args.count
            deadline = math.inf if args.timeout is None else trio.current_time() + args.timeout
            with trio.move_on_at(deadline) as timer:
                while count is None or received < count:
                    limit = 1024 if count is None else min(1024, count - received)
                    batch = await interest.receive_batch(limit)
                    route, sender = _origin(interest)
                    now = time.time_ns()
                    for msg in batch:
                        out.write(
                            {
                                "route": route,
                                "sender": sender,
                                "latency_us": latency_us(msg, now_ns=now),
                                "payload": message_to_dict(msg),
                            },
                            flush=False,
                        )
                    out.flush()
                    received += len(batch)
                if count is not None:
                    await _settle()
                interest.close()  # unsubscribe (the publishers are told) before the node stops
            tasks.cancel_scope.cancel()
            if timer.cancelled_caught and count is not None and received < count:
                raise Unavailable(
                    f"received {received} of {count} messages within {args.timeout:g} s"
                )
    status.write({"event": "done", "received": received, "signal": stop.signal})
    return EXIT_OK


async def _settle(seconds: float = _SETTLE_LIMIT) -> None:
    """Let the node finish what it is doing (at most ``seconds``): here, acknowledging the last
    messages received, so that a publisher waiting for acknowledgements learns that they
    arrived before this subscriber goes away.

    Needed because the node sends no last acknowledgement when a subscription closes, and an
    acknowledgement still being written when it closes is abandoned (the publisher then keeps
    a reliable link open for its grace period).
    """
    with trio.move_on_after(seconds):
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


def _origin(interest: Interest[Any]) -> tuple[str, str | None]:
    """The route and sender to print: those of the one linked intent, if there is exactly one.

    Otherwise the route is the subscription's own (a pattern for a pattern interest) and the
    sender is unknown (``None``).
    """
    intents: frozenset[LinkInfo] = interest.intents
    if len(intents) == 1:
        (only,) = intents
        return str(only.route), only.peer
    return str(interest.link.route), None
