"""Request and reply over routes: a :class:`Service` answers, a :class:`Caller` asks.

Both are async context managers, made alike (``router.caller(path, Req, Resp)``,
``router.service(path, Req, Resp, handler)``, the same on a ``Node``) and closed by leaving
their block or by ``aclose()``.  Any message types can be used: correlation lives in our
envelopes (``protocols/v1/rpc.proto``), which travel as ordinary typed messages, so requests
and replies link, discover, cross nodes and obey QoS like any route:

- requests on ``dndm.v1.RpcRequest@<path>``: every service of the path subscribes there;
- replies on the caller's own route ``dndm.v1.RpcReply@<path>.reply.c<16 hex digits>``.

**One service answers each call.**  The caller picks a target among the services its request
intent is linked to, round-robin per call: a service in this process by its handle id, a remote
node by its peer id (that node then picks one of its services on the path by the call id).
Every linked service receives the envelope; only the target answers.  A service that goes
away stops being a candidate, and a call it had not answered yet is sent again to another
one (under a new call id, so no call ever gets two answers).

**Streams.**  ``caller.stream(request)`` is an async iterator of replies that ends when the
service ends the call; ``await caller.call(request)`` returns the first reply.  A handler may
return one reply, or an iterable or async iterable (a generator) of replies; it may be sync or
async.  A service runs a fixed pool of ``concurrency`` workers, never a task per request, and
lets at most ``backlog`` calls wait for one: beyond that a call is refused at once as
overloaded (the caller gets :class:`Unavailable`), so the request route never backs up.

**Deadlines.**  Each call has a time limit, sent with the request as the time left (a service
grants at most ``max_timeout``).  The handler runs under a trio deadline
(``trio.current_effective_deadline()`` tells it how long it has) and nothing is sent for it
past that point; the caller raises :class:`Timeout`.

**Errors.**  A handler's exception reaches the caller as :class:`RemoteError` with the
exception's text and class name; the service keeps running.

**In process**, the envelopes still travel on their routes, but the user's request and reply
are handed over by reference (never serialized) when caller and service are in one process.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, cast

import trio
from google.protobuf.message import DecodeError, Message

from dndm_p2p.core.intent import Intent
from dndm_p2p.core.interest import Interest
from dndm_p2p.core.links import LinkEventKind, LinkInfo
from dndm_p2p.errors import (
    Closed,
    DndmError,
    RemoteError,
    Timeout,
    TypeMismatch,
    Unavailable,
    WouldBlock,
)
from dndm_p2p.nurseries import StackOwner, open_owned_nursery
from protocols.v1.rpc_pb2 import RpcError, RpcReply, RpcRequest
from protocols.validation import check_count, check_seconds

__all__ = ["Caller", "Handler", "ReplyStream", "RpcConfig", "Service"]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

#: What a handler may return: one reply, an awaitable of one, or a (async) stream of replies.
Handler: TypeAlias = Callable[[Req], Resp | Awaitable[Resp] | Iterable[Resp] | AsyncIterable[Resp]]

#: Random id of this process, sent as ``RpcRequest.origin``.
_PROCESS_TOKEN = secrets.randbits(64)
#: Call ids need to be unpredictable only as much as any value a linked node sees anyway
#: (every linked service receives every request): a seeded generator, no syscall per call.
_call_ids = random.Random(secrets.randbits(128))
_parcel_keys = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RpcConfig:
    """Limits of a caller or a service (each side reads the fields that concern it).

    ``timeout``: a call's default time limit in seconds.  ``depth``: the queue of the request
    interest (service) or of the reply interest (caller), with the ``block`` policy, and the most
    replies one stream buffers before its call fails.  ``concurrency``: the service's workers,
    i.e. calls handled at once.  ``backlog``: the calls a service lets wait for a worker; beyond
    it, a call is refused at once as overloaded (the caller gets :class:`Unavailable`).
    ``max_timeout``: the longest time limit a service grants a call, whatever the caller asked.
    ``max_reply_routes``: the callers a service keeps a reply intent for (the least recently
    used is closed beyond it).  ``max_pending_calls``: the calls one caller may have open at once.
    """

    timeout: float = 10.0
    depth: int = 1024
    concurrency: int = 16
    backlog: int = 256
    max_timeout: float = 300.0
    max_reply_routes: int = 256
    max_pending_calls: int = 4096

    def __post_init__(self) -> None:
        check_seconds(self, "timeout", above=0)
        check_seconds(self, "max_timeout", above=0)
        check_count(self, "backlog", at_least=0, at_most=1 << 20)
        check_count(self, "depth", at_least=1, at_most=1 << 20)
        check_count(self, "concurrency", at_least=1, at_most=4096)
        check_count(self, "max_reply_routes", at_least=1, at_most=1 << 16)
        check_count(self, "max_pending_calls", at_least=1, at_most=1 << 20)


class Declarer(Protocol):
    """What a caller or service declares its handles on: a Router or a Node."""

    def publish(self, route: str, msg_type: type[Any]) -> Intent[Any]:
        """Declare an intent."""

    def subscribe(
        self, route: str, msg_type: type[Any], *, depth: int | None = None, overflow: str = ...
    ) -> Interest[Any]:
        """Declare an interest."""


def _config(config: RpcConfig | None, **overrides: Any) -> RpcConfig:
    given = {name: value for name, value in overrides.items() if value is not None}
    return replace(config or RpcConfig(), **given)


# -- in-process registries (all touched from the trio thread only) --------------------------------

#: Open services by the handle id of their request interest.
_services_by_handle: dict[int, Service[Any, Any]] = {}
#: Open services by (id of their router or node, path), in handle-id order.
_service_groups: dict[tuple[int, str], list[Service[Any, Any]]] = {}
#: Open callers by the text of their reply route.
_callers_by_route: dict[str, Caller[Any, Any]] = {}


# -- the caller -----------------------------------------------------------------------------------

_END = object()
#: Pushed into a call whose target went away before it answered anything: send it again.
_RETARGET = object()


class _Call:
    """One open call at the caller: its replies in arrival order, bounded."""

    __slots__ = ("answered", "ended", "items", "limit", "parcels", "target", "wake")

    def __init__(self, limit: int) -> None:
        self.items: deque[object] = deque()
        self.parcels: dict[int, Message] = {}
        self.limit = limit
        self.ended = False
        #: True once the service sent anything for the call (it is then never resent).
        self.answered = False
        self.target: tuple[str, int] = ("", 0)
        self.wake = trio.Event()

    def push(self, item: object) -> None:
        if self.ended:
            return
        if item is not _RETARGET:
            self.answered = True
        if item is not _END and len(self.items) >= self.limit:
            item = WouldBlock(f"a reply stream overran its buffer of {self.limit} replies")
        if item is _END or isinstance(item, BaseException):
            self.ended = True
        self.items.append(item)
        self.wake.set()


class Caller(StackOwner, Generic[Req, Resp]):
    """Sends requests to the services of ``path`` and hands each call its own replies.

    Use it as an async context manager (or close it with :meth:`aclose`); :meth:`call` and
    :meth:`stream` may be used by many tasks at once.  Closing ends every open call with
    :class:`Closed`.
    """

    def __init__(
        self,
        bus: Declarer,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        *,
        timeout: float | None = None,
        config: RpcConfig | None = None,
    ) -> None:
        """Prepare a caller; it declares its handles when entered."""
        self._bus = bus
        self.path = path
        self.request_type = request_type
        self.reply_type = reply_type
        self.config = _config(config, timeout=timeout)
        self._calls: dict[int, _Call] = {}
        self._requests: Intent[RpcRequest] | None = None
        self._replies: Interest[RpcReply] | None = None
        self._scope: trio.CancelScope | None = None
        self._reply_route = ""
        self._turn = 0
        #: Replies that arrived for no open call (late after a timeout or a close).
        self.unmatched = 0

    @property
    def reply_route(self) -> str:
        """The text of this caller's reply route (empty until entered)."""
        return self._reply_route

    async def __aenter__(self) -> Caller[Req, Resp]:
        if self._stack is not None or self._reply_route:
            raise Closed(f"a caller of {self.path} can be entered once")
        stack = AsyncExitStack()
        try:
            nursery = await stack.enter_async_context(open_owned_nursery())
            depth = self.config.depth
            replies = stack.enter_context(
                closing(
                    self._bus.subscribe(
                        f"{self.path}.reply.c{secrets.randbits(64):016x}",
                        RpcReply,
                        depth=depth,
                        overflow="block",
                    )
                )
            )
            self._requests = stack.enter_context(closing(self._bus.publish(self.path, RpcRequest)))
            self._replies = replies
            self._reply_route = str(replies.route)
            _callers_by_route[self._reply_route] = self
            stack.callback(_callers_by_route.pop, self._reply_route, None)
            stack.callback(nursery.cancel_scope.cancel)
            self._scope = await nursery.start(self._deliver_replies, replies)
            nursery.start_soon(self._watch_services, self._requests)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def aclose(self) -> None:
        """Close the caller now, from any task (idempotent): open calls end with :class:`Closed`.

        Its handles close and its task is cancelled at once; leaving the ``async with`` block
        (which must still happen) then only waits for that task.
        """
        self._on_exit()
        await trio.lowlevel.checkpoint()

    def _on_exit(self) -> None:
        requests, replies, scope = self._requests, self._replies, self._scope
        self._requests = self._replies = self._scope = None
        _callers_by_route.pop(self._reply_route, None)
        for handle in (requests, replies):
            if handle is not None:
                handle.close()
        if scope is not None:
            scope.cancel()
        for call in self._calls.values():
            call.push(Closed(f"the caller of {self.path} closed during the call", route=self.path))
        self._calls.clear()

    async def _deliver_replies(
        self, replies: Interest[RpcReply], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        calls = self._calls
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async for envelope in replies:
                call = calls.get(envelope.call_id)
                if call is None:
                    self.unmatched += 1
                    continue
                call.push(self._open(envelope, call))
                if envelope.final:
                    call.push(_END)

    async def _watch_services(self, requests: Intent[RpcRequest]) -> None:
        """Send again the calls whose service went away before answering anything."""
        async for event in requests.links():
            if event.kind is not LinkEventKind.UNLINKED:
                continue
            remaining = set(self._targets(requests.interests))
            for call in self._calls.values():
                if not call.answered and call.target not in remaining and not call.items:
                    call.push(_RETARGET)

    def _open(self, envelope: RpcReply, call: _Call) -> object:
        """The user's reply (or error) inside ``envelope``, or ``None`` for a bare end marker."""
        if envelope.HasField("error") and envelope.error.code != RpcError.OK:
            error = envelope.error
            if error.code == RpcError.OVERLOADED:
                return Unavailable(error.message, route=self.path)
            return RemoteError(error.message, code=error.code, kind=error.kind, route=self.path)
        kind = envelope.WhichOneof("payload")
        if kind == "in_process":
            return call.parcels.pop(envelope.sequence, None)
        if kind == "body":
            try:
                return self.reply_type.FromString(envelope.body)
            except DecodeError:
                return RemoteError(
                    f"a reply on {self.path} does not decode as {self.reply_type.__qualname__}",
                    code=RpcError.BAD_REPLY,
                    route=self.path,
                )
        return None

    @staticmethod
    def _targets(links: frozenset[LinkInfo]) -> list[tuple[str, int]]:
        """The candidates, sorted: ``("", handle id)`` here, ``(peer id, 0)`` per remote node."""
        return sorted(
            {("", link.handle_id) if link.peer is None else (link.peer, 0) for link in links}
        )

    def _pick(self, links: frozenset[LinkInfo]) -> tuple[str, int]:
        """The next target, round-robin over the current candidates."""
        targets = self._targets(links)
        self._turn += 1
        return targets[self._turn % len(targets)]

    async def wait_services(self, count: int = 1) -> int:
        """Wait until services in at least ``count`` places (a service here counts one each, a
        remote node one) are linked, and return how many are.  Raises :class:`Closed` if the
        caller is not open."""
        requests = self._requests
        if requests is None:
            raise Closed(f"the caller of {self.path} is not open", route=self.path)
        links = await requests.wait_links(lambda links: len(self._targets(links)) >= count)
        return len(self._targets(links))

    def stream(self, request: Req, *, timeout: float | None = None) -> ReplyStream[Resp]:
        """Start a call whose replies are iterated: ``async for reply in caller.stream(req)``.

        The request is sent on the first iteration (after waiting for a service to be linked).
        Iteration ends when the service ends the call; it raises :class:`RemoteError` when the
        service failed it, :class:`Timeout` at the deadline (``timeout`` seconds from the start,
        the caller's default when ``None``) and :class:`Closed` when the caller closes.  Use
        ``async with caller.stream(req) as replies`` to end a call early.
        """
        if type(request) is not self.request_type:
            raise TypeMismatch(
                f"{self.path} takes {self.request_type.__qualname__}, "
                f"not {type(request).__qualname__}",
                route=self.path,
            )
        limit = self.config.timeout if timeout is None else timeout
        return ReplyStream(self, request, limit)

    async def call(self, request: Req, *, timeout: float | None = None) -> Resp:  # noqa: ASYNC109
        """Send ``request`` and return the service's (first) reply.

        Raises like :meth:`stream`, and :class:`RemoteError` when the service ended the call
        without replying.
        """
        async with self.stream(request, timeout=timeout) as replies:
            async for reply in replies:
                return reply
        raise RemoteError(f"the service of {self.path} sent no reply", route=self.path)


class ReplyStream(Generic[Resp]):
    """The replies of one call, as an async iterator (see :meth:`Caller.stream`)."""

    def __init__(self, caller: Caller[Any, Resp], request: Message, timeout: float) -> None:
        self._caller = caller
        self._request = request
        self.timeout = timeout
        self._deadline = trio.current_time() + timeout
        self._call_id = 0
        self._call: _Call | None = None
        self._parcel: tuple[Service[Any, Any], int] | None = None
        self._done = False
        #: Times the request was sent again because its service went away unanswered.
        self.resent = 0

    async def __aenter__(self) -> ReplyStream[Resp]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> ReplyStream[Resp]:
        return self

    def close(self) -> None:
        """End the call here (idempotent): later replies are dropped as unmatched."""
        self._done = True
        if self._call_id:
            self._caller._calls.pop(self._call_id, None)
        if self._parcel is not None:
            service, key = self._parcel
            service._parcels.pop(key, None)
            self._parcel = None

    def _timeout(self) -> Timeout:
        path = self._caller.path
        return Timeout(
            f"no reply on {path} within {self.timeout:g} s", route=path, timeout=self.timeout
        )

    async def __anext__(self) -> Resp:
        if self._done:
            raise StopAsyncIteration
        try:
            with trio.move_on_at(self._deadline):
                if self._call is None:
                    await self._send()
                call = self._call
                assert call is not None
                while not call.items:
                    await call.wake.wait()
                    call.wake = trio.Event()
                item = call.items.popleft()
                if item is _RETARGET:
                    await self._send(again=True)
                    return await self.__anext__()
                if item is _END:
                    self.close()
                    raise StopAsyncIteration
                if isinstance(item, BaseException):
                    raise item
                if item is None:  # a parcel that was dropped: skip it
                    return await self.__anext__()
                reply: Resp = item  # type: ignore[assignment]
                return reply
            raise self._timeout()
        except BaseException:
            self.close()
            raise

    async def _send(self, *, again: bool = False) -> None:
        """Send the request to the next target; ``again``: under a new call id, to another one
        (replies to the old id are then unmatched, so the call never sees two answers)."""
        caller = self._caller
        requests = caller._requests
        if requests is None:
            raise Closed(f"the caller of {caller.path} is not open", route=caller.path)
        if not again and len(caller._calls) >= caller.config.max_pending_calls:
            raise WouldBlock(
                f"the caller of {caller.path} has {len(caller._calls)} calls open",
                route=caller.path,
            )
        call_id = _call_ids.getrandbits(64) or 1
        while call_id in caller._calls:
            call_id = _call_ids.getrandbits(64) or 1
        if again and self._call is not None:
            call = self._call
            caller._calls.pop(self._call_id, None)
            self.resent += 1
        else:
            call = _Call(caller.config.depth)
        if self._parcel is not None:
            holder, old_key = self._parcel
            holder._parcels.pop(old_key, None)
            self._parcel = None
        caller._calls[call_id] = call
        self._call_id, self._call = call_id, call
        links = requests.interests
        peer, handle = caller._pick(links if links else await requests.wait_interest())
        call.target = (peer, handle)
        left = self._deadline - trio.current_time()
        envelope = RpcRequest(
            call_id=call_id,
            reply_route=caller.reply_route,
            timeout_us=max(1, int(left * 1e6)),
            target_peer=peer,
            target_handle=handle,
            origin=_PROCESS_TOKEN,
        )
        service = _services_by_handle.get(handle) if handle else None
        if service is not None:
            key = next(_parcel_keys)
            service._parcels[key] = self._request
            self._parcel = (service, key)
            envelope.local_ref = key
        else:
            envelope.body = self._request.SerializeToString()
        await requests.send(envelope)


# -- the service ----------------------------------------------------------------------------------


class _CallerGone(Exception):
    """The caller's reply route closed under a call: it is abandoned without a reply."""


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Service(StackOwner, Generic[Req, Resp]):
    """Answers the requests of ``path`` with ``handler``, ``concurrency`` calls at a time.

    Use it as an async context manager (or :meth:`serve` in a nursery); close it with
    :meth:`aclose`.  The handler gets the request and returns one reply, an awaitable of one,
    or an iterable / async iterable of replies (a stream, ended when it is exhausted).  It runs
    under the call's deadline; an exception it raises is sent to the caller as
    :class:`RemoteError` and counted in :attr:`failed`.

    Remote callers address a node by its peer id: to serve them, create the service on the
    ``Node`` (``node.service(...)``), not on its router, which does not know the node's id.
    """

    def __init__(
        self,
        bus: Declarer,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Handler[Req, Resp],
        *,
        concurrency: int | None = None,
        config: RpcConfig | None = None,
    ) -> None:
        """Prepare a service; it subscribes and starts its workers when entered."""
        self._bus = bus
        self.path = path
        self.request_type = request_type
        self.reply_type = reply_type
        self._handler = handler
        self.config = _config(config, concurrency=concurrency)
        self._parcels: dict[int, Message] = {}
        self._reply_intents: OrderedDict[str, Intent[RpcReply]] = OrderedDict()
        self._reply_prefix = ""
        self._handle_id = 0
        self._peer_id: str | None = None
        # A node and its router are one place: their services share calls.
        self._group_key = (id(getattr(bus, "router", bus)), path)
        self._entered = False
        self._requests: Interest[RpcRequest] | None = None
        self._scope: trio.CancelScope | None = None
        #: Calls answered completely (every reply sent).
        self.served = 0
        #: Calls whose handler raised (the caller got a RemoteError).
        self.failed = 0
        #: Calls not answered because their deadline passed (before or while handling).
        self.expired = 0
        #: Requests refused: an undecodable body, or a reply route not of this path.
        self.refused = 0
        #: Calls refused because ``backlog`` calls already waited for a worker.
        self.overloaded = 0

    async def __aenter__(self) -> Service[Req, Resp]:
        if self._entered:
            raise Closed(f"a service of {self.path} can be entered once")
        self._entered = True
        stack = AsyncExitStack()
        try:
            nursery = await stack.enter_async_context(open_owned_nursery())
            stack.callback(self._close_reply_intents)
            requests = stack.enter_context(
                closing(
                    self._bus.subscribe(
                        self.path, RpcRequest, depth=self.config.depth, overflow="block"
                    )
                )
            )
            self._reply_prefix = f"{RpcReply.DESCRIPTOR.full_name}@{self.path}.reply."
            self._peer_id = getattr(self._bus, "peer_id", None)
            self._handle_id = requests.handle_id
            self._requests = requests
            _services_by_handle[self._handle_id] = self
            group = _service_groups.setdefault(self._group_key, [])
            group.append(self)
            group.sort(key=lambda service: service._handle_id)
            stack.callback(self._unregister)
            stack.callback(nursery.cancel_scope.cancel)
            self._scope = await nursery.start(self._run, requests)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def aclose(self) -> None:
        """Stop answering now, from any task (idempotent): calls in progress are abandoned
        without a reply (their callers time out).  Leaving the ``async with`` block (which must
        still happen) then only waits for the cancelled workers."""
        self._on_exit()
        await trio.lowlevel.checkpoint()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the service until cancelled: ``await nursery.start(service.serve)``."""
        async with self:
            task_status.started()
            await trio.sleep_forever()

    def _on_exit(self) -> None:
        self._unregister()
        requests, scope = self._requests, self._scope
        self._requests = self._scope = None
        if requests is not None:
            requests.close()
        if scope is not None:
            scope.cancel()
        self._close_reply_intents()

    def _unregister(self) -> None:
        if _services_by_handle.get(self._handle_id) is self:
            del _services_by_handle[self._handle_id]
        group = _service_groups.get(self._group_key)
        if group is not None and self in group:
            group.remove(self)
            if not group:
                del _service_groups[self._group_key]
        self._parcels.clear()

    def _close_reply_intents(self) -> None:
        for intent in self._reply_intents.values():
            intent.close()
        self._reply_intents.clear()

    def _is_mine(self, envelope: RpcRequest) -> bool:
        if envelope.target_handle:
            return envelope.origin == _PROCESS_TOKEN and envelope.target_handle == self._handle_id
        if self._peer_id is None or envelope.target_peer != self._peer_id:
            return False
        group = _service_groups.get(self._group_key)
        return group is not None and group[envelope.call_id % len(group)] is self

    async def _run(
        self, requests: Interest[RpcRequest], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The dispatcher and the pool of workers, under one cancel scope (``aclose``'s)."""
        with trio.CancelScope() as scope:
            send, receive = trio.open_memory_channel[tuple[RpcRequest, float]](self.config.backlog)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._dispatch, requests, send)
                with receive:
                    for _ in range(self.config.concurrency):
                        nursery.start_soon(self._work, receive.clone())
                task_status.started(scope)

    async def _dispatch(
        self,
        requests: Interest[RpcRequest],
        workers: trio.MemorySendChannel[tuple[RpcRequest, float]],
    ) -> None:
        """Hand this service's requests to the workers; never waits for one.

        Requests for other services are skipped; beyond the backlog a call is refused at once,
        so the shared request route never backs up behind a busy service.
        """
        longest = self.config.max_timeout
        with workers:
            async for envelope in requests:
                if not self._is_mine(envelope):
                    continue
                granted = envelope.timeout_us / 1e6 if envelope.timeout_us else longest
                try:
                    workers.send_nowait((envelope, trio.current_time() + min(granted, longest)))
                except trio.WouldBlock:
                    self.overloaded += 1
                    self._refuse_now(envelope, RpcError.OVERLOADED, "the service is overloaded")

    def _refuse_now(self, envelope: RpcRequest, code: int, message: str) -> None:
        """Answer ``envelope`` with an error without waiting (dropped if that cannot be done)."""
        self._parcels.pop(envelope.local_ref, None)
        intent = self._reply_intents.get(envelope.reply_route)
        if intent is None or intent.closed:
            return
        reply = RpcReply(call_id=envelope.call_id, final=True)
        reply.error.code = code  # type: ignore[assignment]
        reply.error.message = message
        with contextlib.suppress(DndmError):
            intent.send_nowait(reply)

    async def _work(self, receive: trio.MemoryReceiveChannel[tuple[RpcRequest, float]]) -> None:
        async with receive:
            async for envelope, deadline in receive:
                await self._answer(envelope, deadline)

    def _request_of(self, envelope: RpcRequest) -> Req:
        kind = envelope.WhichOneof("payload")
        if kind == "local_ref":
            request = self._parcels.pop(envelope.local_ref, None)
            if request is None:
                raise _Refused(RpcError.BAD_REQUEST, "the in-process request is gone")
            return request  # type: ignore[return-value]
        try:
            return self.request_type.FromString(envelope.body)
        except DecodeError:
            raise _Refused(
                RpcError.BAD_REQUEST,
                f"the request does not decode as {self.request_type.__qualname__}",
            ) from None

    def _reply_intent(self, route: str) -> Intent[RpcReply]:
        intents = self._reply_intents
        intent = intents.get(route)
        if intent is not None and not intent.closed:
            intents.move_to_end(route)
            return intent
        intent = self._bus.publish(route, RpcReply)
        intents[route] = intent
        while len(intents) > self.config.max_reply_routes:
            intents.popitem(last=False)[1].close()
        return intent

    async def _answer(self, envelope: RpcRequest, deadline: float) -> None:
        if trio.current_time() >= deadline:
            self.expired += 1
            self._parcels.pop(envelope.local_ref, None)
            return
        if not envelope.reply_route.startswith(self._reply_prefix):
            self.refused += 1
            self._parcels.pop(envelope.local_ref, None)
            return
        # Replies are handed over by reference only to a caller that handed its request so.
        local = envelope.WhichOneof("payload") == "local_ref"
        try:
            intent = self._reply_intent(envelope.reply_route)
        except DndmError:
            self.refused += 1
            self._parcels.pop(envelope.local_ref, None)
            return
        sender = _ReplySender(self, intent, envelope, local)
        with trio.move_on_at(deadline) as scope:
            if not intent.has_interest:
                await intent.wait_interest()
            try:
                request = self._request_of(envelope)
                await self._run_handler(request, sender)
            except _Refused as refusal:
                self.refused += 1
                await sender.fail(refusal.code, str(refusal), "")
            except _CallerGone:
                return
            except Exception as exc:
                self.failed += 1
                await sender.fail(RpcError.HANDLER_FAILED, str(exc), type(exc).__name__)
            else:
                self.served += 1
        if scope.cancelled_caught:
            self.expired += 1

    async def _run_handler(self, request: Req, sender: _ReplySender) -> None:
        outcome: Any = self._handler(request)
        if isinstance(outcome, Awaitable) and not isinstance(outcome, Message):
            outcome = await outcome
        if isinstance(outcome, Message):
            await sender.send(outcome, final=True)
        elif isinstance(outcome, AsyncIterable):
            iterator: AsyncIterator[Any] = aiter(outcome)
            try:
                async for reply in iterator:
                    await sender.send(reply, final=False)
            finally:
                close = getattr(iterator, "aclose", None)
                if close is not None:
                    with trio.CancelScope(shield=True):
                        await close()
            await sender.end()
        elif isinstance(outcome, Iterable):
            for reply in outcome:
                await sender.send(reply, final=False)
            await sender.end()
        else:
            raise _Refused(
                RpcError.BAD_REPLY,
                f"the handler of {self.path} returned {type(outcome).__qualname__}",
            )


class _ReplySender:
    """Sends the replies of one call, numbered from 0, on the caller's reply route."""

    __slots__ = ("_call_id", "_caller", "_intent", "_sequence", "_service")

    def __init__(
        self,
        service: Service[Any, Any],
        intent: Intent[RpcReply],
        envelope: RpcRequest,
        local: bool,
    ) -> None:
        self._service = service
        self._intent = intent
        self._call_id = envelope.call_id
        self._caller = _callers_by_route.get(envelope.reply_route) if local else None
        self._sequence = 0

    async def send(self, reply: Message, *, final: bool) -> None:
        reply_type = self._service.reply_type
        if type(reply) is not reply_type:
            raise _Refused(
                RpcError.BAD_REPLY,
                f"the handler of {self._service.path} returned {type(reply).__qualname__}, "
                f"not {reply_type.__qualname__}",
            )
        envelope = RpcReply(call_id=self._call_id, sequence=self._sequence, final=final)
        call = self._caller._calls.get(self._call_id) if self._caller is not None else None
        if call is not None:
            call.parcels[self._sequence] = reply
            envelope.in_process = True
        else:
            envelope.body = reply.SerializeToString()
        self._sequence += 1
        await self._put(envelope)

    async def _put(self, envelope: RpcReply) -> None:
        try:
            await self._intent.send(envelope)
        except Closed:
            raise _CallerGone from None

    async def end(self) -> None:
        await self._put(RpcReply(call_id=self._call_id, sequence=self._sequence, final=True))

    async def fail(self, code: int, message: str, kind: str) -> None:
        envelope = RpcReply(call_id=self._call_id, sequence=self._sequence, final=True)
        envelope.error.code = code  # type: ignore[assignment]
        envelope.error.message = message
        envelope.error.kind = kind
        await self._put(envelope)


class RpcEndpoints:
    r"""``caller()`` and ``service()`` for a class whose instances are :class:`Declarer`\ s (the
    router and the node): both make their endpoints the same way."""

    def caller(
        self,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        *,
        timeout: float | None = None,
        config: RpcConfig | None = None,
    ) -> Caller[Req, Resp]:
        """A :class:`Caller` of the services of ``path`` (enter it to use it)."""
        bus = cast(Declarer, self)
        return Caller(bus, path, request_type, reply_type, timeout=timeout, config=config)

    def service(
        self,
        path: str,
        request_type: type[Req],
        reply_type: type[Resp],
        handler: Handler[Req, Resp],
        *,
        concurrency: int | None = None,
        config: RpcConfig | None = None,
    ) -> Service[Req, Resp]:
        """A :class:`Service` answering ``path`` with ``handler`` (enter it to use it)."""
        bus = cast(Declarer, self)
        return Service(
            bus, path, request_type, reply_type, handler, concurrency=concurrency, config=config
        )
