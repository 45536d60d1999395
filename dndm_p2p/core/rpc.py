"""Request and reply over routes: a :class:`Service` answers, a :class:`Caller` asks.

A service subscribes requests on ``path`` and publishes replies on ``path.reply``; callers do the
opposite.  Replies are matched to calls by a correlation field that both message types carry
(an unsigned integer field, ``nonce`` by default): the caller writes a random 64-bit value into
each request, the service copies it into the reply, and the caller hands each reply to the call
that is waiting for exactly that value.  A reply nobody waits for any more (its call timed out)
is dropped and counted; it can never reach the wrong call, and a slow caller never delays
another (the Go original's Caller matched replies first-in first-out and could panic delivering
to a call that had just timed out).

Works the same in one process (``Router``) and across nodes (``Node``).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, closing
from typing import Any, Generic, Protocol, TypeVar

import trio
from google.protobuf.message import Message

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.route import message_full_name
from dndm_p2p.errors import Closed, ConfigError, Timeout
from dndm_p2p.nurseries import StackOwner, open_owned_nursery

__all__ = ["Caller", "Service"]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class Declarer(Protocol):
    """What a caller or service declares its handles on: a Router or a Node."""

    def publish(self, route: str, msg_type: type[Any], **options: Any) -> Intent[Any]:
        """Declare an intent."""

    def subscribe(self, route: str, msg_type: type[Any], **options: Any) -> Interest[Any]:
        """Declare an interest."""


def _check_field(msg_type: type[Message], field: str) -> None:
    descriptor = msg_type.DESCRIPTOR.fields_by_name.get(field)
    if descriptor is None or descriptor.cpp_type != descriptor.CPPTYPE_UINT64:
        raise ConfigError(
            f"{message_full_name(msg_type)} needs a uint64 field {field!r} to correlate replies"
        )


class _Endpoint(Generic[Req, Resp]):
    """What a caller and a service share: the path, the two types and the correlation field."""

    def __init__(
        self,
        bus: Declarer,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        correlation_field: str,
        depth: int,
    ) -> None:
        _check_field(request_type, correlation_field)
        _check_field(reply_type, correlation_field)
        self._bus = bus
        self._path = path
        self._request_type = request_type
        self._reply_type = reply_type
        self._field = correlation_field
        self._depth = depth


class Caller(StackOwner, _Endpoint[Req, Resp]):
    """Sends requests to the services on ``path`` and waits for their replies.

    Use it as an async context manager; :meth:`call` may be used by many tasks at once.
    """

    def __init__(
        self,
        bus: Declarer,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        *,
        correlation_field: str = "nonce",
        depth: int = 1024,
    ) -> None:
        """Prepare a caller; it declares its handles when entered."""
        super().__init__(bus, path, request_type, reply_type, correlation_field, depth)
        self._waiting: dict[int, trio.MemorySendChannel[Resp]] = {}
        self._requests: Intent[Req] | None = None
        self._stack: AsyncExitStack | None = None
        #: Replies that arrived for no waiting call (late after a timeout, or another caller's).
        self.unmatched = 0

    async def __aenter__(self) -> Caller[Req, Resp]:
        stack = AsyncExitStack()
        try:
            nursery = await stack.enter_async_context(open_owned_nursery())
            replies = stack.enter_context(
                closing(
                    self._bus.subscribe(f"{self._path}.reply", self._reply_type, depth=self._depth)
                )
            )
            self._requests = stack.enter_context(
                closing(self._bus.publish(self._path, self._request_type))
            )
            stack.callback(nursery.cancel_scope.cancel)
            nursery.start_soon(self._deliver_replies, replies)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    def _on_exit(self) -> None:
        """Leaving the block ends every waiting call, then the reply route."""
        self._requests = None
        for channel in self._waiting.values():
            channel.close()
        self._waiting.clear()

    async def _deliver_replies(self, replies: Interest[Resp]) -> None:
        field = self._field
        async for reply in replies:
            channel = self._waiting.pop(getattr(reply, field), None)
            if channel is None:
                self.unmatched += 1
                continue
            channel.send_nowait(reply)  # a buffer of one, used once: never blocks
            channel.close()

    async def call(self, request: Req, *, timeout: float = 10.0) -> Resp:  # noqa: ASYNC109
        """Send ``request`` (its correlation field is overwritten) and return the reply.

        Waits for a service to be linked first.  Raises :class:`Timeout` when no reply comes
        within ``timeout`` seconds, :class:`Closed` when the caller closes meanwhile.
        """
        requests = self._requests
        if requests is None:
            raise Closed("the caller is not open")
        nonce = secrets.randbits(64) or 1
        while nonce in self._waiting:
            nonce = secrets.randbits(64) or 1
        setattr(request, self._field, nonce)
        send, receive = trio.open_memory_channel[Resp](1)
        self._waiting[nonce] = send
        try:
            with trio.move_on_after(timeout) as deadline:
                await requests.wait_interest()
                await requests.send(request)
                async for reply in receive:
                    return reply
                raise Closed("the caller closed while a call was waiting")
            raise Timeout(
                f"no reply on {self._path} within {timeout:g} s", route=self._path, timeout=timeout
            ) from None
        finally:
            self._waiting.pop(nonce, None)
            if deadline.cancelled_caught:
                send.close()


class Service(_Endpoint[Req, Resp]):
    """Answers requests on ``path``: every request gets the handler's reply, in order."""

    def __init__(
        self,
        bus: Declarer,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Callable[[Req], Resp | Awaitable[Resp]],
        *,
        correlation_field: str = "nonce",
        depth: int = 1024,
    ) -> None:
        """Prepare a service; :meth:`serve` runs it."""
        super().__init__(bus, path, request_type, reply_type, correlation_field, depth)
        self._handler = handler
        #: Requests answered so far.
        self.served = 0

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Answer requests until cancelled; a handler's exception propagates and stops it.

        Use ``await nursery.start(service.serve)`` to know when it is ready.
        """
        with (
            closing(
                self._bus.subscribe(
                    self._path, self._request_type, depth=self._depth, overflow="block"
                )
            ) as requests,
            closing(self._bus.publish(f"{self._path}.reply", self._reply_type)) as replies,
        ):
            task_status.started()
            field = self._field
            async for request in requests:
                outcome = self._handler(request)
                reply = await outcome if isinstance(outcome, Awaitable) else outcome
                if type(reply) is not self._reply_type:
                    raise ConfigError(
                        f"the handler of {self._path} returned {type(reply).__qualname__}, "
                        f"not {self._reply_type.__qualname__}"
                    )
                setattr(reply, field, getattr(request, field))
                await replies.send(reply)
                self.served += 1
