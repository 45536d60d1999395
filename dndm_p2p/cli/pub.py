"""``dndm pub``: publish JSON lines from stdin, or generated messages, on a route.

Status lines (``listening``, ``linked``, peer events, ``done``) are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio
from google.protobuf.message import Message

from dndm_p2p.cli.events import print_events, print_links
from dndm_p2p.cli.exitcodes import EXIT_OK
from dndm_p2p.cli.msgtypes import generate_message, message_from_json
from dndm_p2p.cli.options import (
    add_discovery_options,
    add_nat_options,
    add_node_options,
    add_type_options,
    check_route,
    message_type,
    non_negative_float,
    positive_float,
    positive_int,
)
from dndm_p2p.cli.output import JsonLines
from dndm_p2p.cli.plugins import Commands, Handler
from dndm_p2p.cli.running import running_node
from dndm_p2p.core.intent import Intent
from dndm_p2p.errors import ConfigError, NoInterest, Unavailable
from dndm_p2p.nurseries import open_owned_nursery

if TYPE_CHECKING:
    from dndm_p2p.node.node import Node
    from dndm_p2p.node.outbound import OutboundLink

__all__ = ["DEFAULT_GENERATE_RATE", "register"]

#: Messages per second of ``dndm pub --generate`` without ``--rate``.
DEFAULT_GENERATE_RATE = 10.0
#: Most messages sent at once when there is no rate to keep.
_SEND_CHUNK = 256
#: How often pub checks whether its subscribers have everything, in seconds.
_DRAIN_POLL = 0.01
#: How long pub waits, without --reliable, for subscribers to take what is in flight.
_BEST_EFFORT_DRAIN = 5.0


def register(commands: Commands) -> Handler:
    """Add ``dndm pub`` to ``commands``; returns its handler."""
    pub = commands.add_parser(
        "pub", help="publish JSON lines from stdin (or generated messages) on a route"
    )
    pub.add_argument(
        "route", metavar="ROUTE", help="path (robot.arm.temp), Type@path or prefix#hash"
    )
    add_type_options(pub)
    add_node_options(pub)
    add_discovery_options(pub, node=False)
    add_nat_options(pub)
    pub.add_argument(
        "--generate",
        action="store_true",
        help="make messages up instead of reading stdin (a numeric 'seq' field counts up)",
    )
    pub.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="messages to send (default: all of stdin; with --generate, until stopped)",
    )
    pub.add_argument(
        "--rate",
        type=non_negative_float,
        metavar="HZ",
        help=f"messages per second, 0 for as fast as possible (default: {DEFAULT_GENERATE_RATE:g} "
        "with --generate, else as fast as possible)",
    )
    pub.add_argument(
        "--wait-interest",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait until someone subscribes before sending (default: wait)",
    )
    pub.add_argument(
        "--min-interests",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --wait-interest, wait for N linked subscribers (default 1)",
    )
    pub.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for subscribers, and with --reliable for acknowledgements (30)",
    )
    pub.add_argument(
        "--reliable",
        action="store_true",
        help="before exiting, wait until every subscriber acknowledged every message or "
        "unsubscribed (exit 3 if that takes longer than --timeout)",
    )
    return _run


def _run(args: argparse.Namespace) -> int:
    msg_type = message_type(args)
    check_route(args.route, msg_type, allow_pattern=False)
    rate = args.rate
    if rate is None:
        rate = DEFAULT_GENERATE_RATE if args.generate else 0.0
    if not args.generate and sys.stdin is None:
        raise ConfigError("there is no stdin to read messages from; use --generate")
    if not args.generate and sys.stdin.isatty():
        print(
            "dndm pub: reading JSON messages from stdin, one per line (--generate makes them up)",
            file=sys.stderr,
            flush=True,
        )
    return trio.run(_run_pub, args, msg_type, rate)


async def _run_pub(args: argparse.Namespace, msg_type: type[Message], rate: float) -> int:
    status = JsonLines(sys.stderr)
    sent = unrouted = 0
    async with running_node(args) as (node, stop), node.events() as events:
        status.write({"event": "listening", "peer": node.peer_id, "addrs": node.addrs})
        async with node.publish(args.route, msg_type) as intent, open_owned_nursery() as tasks:
            tasks.start_soon(print_events, node, events, status)
            deliveries = _Deliveries(intent, node)
            tasks.start_soon(print_links, intent, node, status, deliveries.refresh)
            if args.wait_interest:
                await _wait_interest(intent, node, args.min_interests, args.timeout)
            counter = [0]
            try:
                if args.generate:
                    await _send_generated(intent, msg_type, args.count, rate, counter)
                else:
                    await _send_stdin(intent, msg_type, args.count, rate, counter)
            finally:
                sent, unrouted = counter[0], intent.stats.unrouted
            await deliveries.drain(reliable=args.reliable, seconds=args.timeout)
            tasks.cancel_scope.cancel()
    status.write(
        {
            "event": "done",
            "sent": sent,
            "unrouted": unrouted,  # sent while nobody was subscribed
            "signal": stop.signal,
        }
    )
    return EXIT_OK


async def _wait_interest(intent: Intent[Any], node: Node, wanted: int, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await intent.wait_links(lambda links: len(links) >= wanted)
        return
    peers = len(node.peers())
    raise NoInterest(
        f"{len(intent.interests)} of {wanted} subscriber(s) of {intent.route} linked within "
        f"{seconds:g} s ({peers} peer(s) connected); use --timeout, or --no-wait-interest to "
        "send anyway"
    )


async def _pace(start: float, index: int, rate: float) -> None:
    if rate > 0:
        await trio.sleep_until(start + index / rate)


async def _send_generated(
    intent: Intent[Any], msg_type: type[Message], count: int | None, rate: float, counter: list[int]
) -> None:
    start = trio.current_time()
    seq = 0
    while count is None or seq < count:
        if rate > 0:
            await _pace(start, seq, rate)
            seq += 1
            await intent.send(generate_message(msg_type, seq))
            counter[0] += 1
            continue
        n = _SEND_CHUNK if count is None else min(_SEND_CHUNK, count - seq)
        now = time.time_ns()
        batch = [generate_message(msg_type, seq + i + 1, now_ns=now) for i in range(n)]
        await intent.send_many(batch)
        seq += n
        counter[0] += n


async def _send_stdin(
    intent: Intent[Any], msg_type: type[Message], count: int | None, rate: float, counter: list[int]
) -> None:
    start = trio.current_time()
    line_number = 0
    async for lines in _stdin_lines():
        batch: list[Message] = []
        for line in lines:
            line_number += 1
            if not line.strip():
                continue
            try:
                batch.append(message_from_json(line, msg_type))
            except ConfigError as exc:
                raise ConfigError(f"stdin line {line_number}: {exc}") from None
        if count is not None:
            batch = batch[: count - counter[0]]
        if rate > 0:
            for msg in batch:
                await _pace(start, counter[0], rate)
                await intent.send(msg)
                counter[0] += 1
        elif batch:
            await intent.send_many(batch)
            counter[0] += len(batch)
        if count is not None and counter[0] >= count:
            return


async def _stdin_lines() -> AsyncIterator[list[bytes]]:
    """Complete lines of stdin, as they arrive, read by a worker thread (never blocking trio)."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        read = functools.partial(os.read, fd, 1 << 16)
        # mypy misreads run_sync's keyword-only parameters after *args: Unpack[Ts].
        chunk = await trio.to_thread.run_sync(read, abandon_on_cancel=True)  # type: ignore[call-arg]
        if not chunk:
            if pending:
                yield [pending]
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if lines:
            yield lines


class _Deliveries:
    """What each remote subscriber of an intent has not acknowledged yet.

    Every data link acknowledges what it delivered (reliable or not), so the publisher knows
    when the last message arrived.  The links are remembered as they appear, so that a reliable
    link whose subscriber went away (it stays linked for a grace period, in case the subscriber
    comes back) is still judged by what it had acknowledged.
    """

    def __init__(self, intent: Intent[Any], node: Node) -> None:
        self._intent = intent
        self._node = node
        self._links: dict[tuple[str, int], OutboundLink] = {}

    def refresh(self) -> None:
        """Remember the data links that now carry the intent's route."""
        route = self._intent.route
        for info in self._intent.interests:
            session = self._node.session(info.peer) if info.peer is not None else None
            if session is None:
                continue
            for link in session.outbound:
                if link.route == route:
                    self._links[(link.peer, link.link_id)] = link

    def behind(self) -> dict[str, int]:
        """Messages not acknowledged yet, by peer (a link not seen yet counts as one)."""
        self.refresh()
        behind: dict[str, int] = {}
        for info in self._intent.interests:
            if info.peer is None:
                continue
            link = self._links.get((info.peer, info.handle_id))
            pending = 1 if link is None else len(link.queue) + link.next_sequence - 1 - link.acked
            if pending > 0:
                behind[info.peer] = behind.get(info.peer, 0) + pending
        return behind

    async def drain(self, *, reliable: bool, seconds: float) -> None:
        """Wait until every remote subscriber acknowledged everything sent.

        Without ``reliable`` it gives up quietly after a few seconds; with it, it raises
        :class:`Unavailable` after ``seconds``.
        """
        limit = seconds if reliable else min(seconds, _BEST_EFFORT_DRAIN)
        with trio.move_on_after(limit):
            while True:
                if not self.behind():
                    return
                await trio.sleep(_DRAIN_POLL)  # acknowledgements come with no event to wait for
        behind = self.behind()
        if reliable and behind:
            detail = ", ".join(f"{peer}: {count}" for peer, count in sorted(behind.items()))
            raise Unavailable(f"messages not acknowledged within {seconds:g} s ({detail})")
