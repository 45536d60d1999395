"""Each workaround in protocols.libp2p_fixes.host: first the py-libp2p 0.8.1 bug itself, then
the fix.

When one of the "bug" tests fails after a py-libp2p upgrade, the bug is gone: delete the test and
the workaround together.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from libp2p import new_host
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from dndm_p2p.errors import ConfigError
from dndm_p2p.host.build import (
    DEFAULT_LISTEN_ADDR,
    HostConfig,
    connections_to,
    listen_addrs,
    running_host,
)
from dndm_p2p.host.identity import generate_identity
from protocols.libp2p_fixes.host import (
    check_listen_addrs_free,
    clear_dial_backoff,
    close_host,
    close_orphan_listeners,
    forget_peer_addrs,
    require_listeners,
    size_resource_manager,
    track_listeners,
    unwrap_host_run_exception,
)
from tests.support.trio_checks import live_tasks


def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, py-libp2p MultiError members)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in getattr(current, "errors", ()) if isinstance(e, BaseException))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)


# --- Leaving host.run() leaves the listening socket open --------------------------------------


async def _port_accepts(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:``port`` is accepted."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def test_bug_leaving_host_run_leaves_the_listener_open() -> None:
    host = new_host(key_pair=generate_identity())
    with trio.fail_after(10):
        async with host.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
            port = int(host.get_transport_addrs()[0].value_for_protocol("tcp"))
        assert await _port_accepts(port)  # run() has returned, but the port still accepts
        await host.close()  # (clean up what run() left behind)
        assert not await _port_accepts(port)


async def test_fix_close_host_inside_run_closes_the_listener() -> None:
    host = new_host(key_pair=generate_identity())
    with trio.fail_after(10):
        async with host.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
            port = int(host.get_transport_addrs()[0].value_for_protocol("tcp"))
            assert await close_host(host, grace=5)
        assert not await _port_accepts(port)
    # ...and the conftest checks that no listener task is left running.


# --- An exception from the host.run() block comes out wrapped in exception groups -----------


async def _raise_inside_run(error: Exception) -> None:
    host = new_host(key_pair=generate_identity())
    async with host.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
        await close_host(host, grace=5)
        raise error


async def test_bug_an_exception_from_the_run_block_comes_out_in_nested_groups() -> None:
    error = KeyError("raised in the block")
    with trio.fail_after(10), pytest.raises(BaseExceptionGroup) as caught:
        await _raise_inside_run(error)
    group = caught.value
    assert not isinstance(group, KeyError)  # `except KeyError` around the block does not match
    inner = group.exceptions[0]
    assert isinstance(inner, BaseExceptionGroup)  # two levels for one host
    assert inner.exceptions == (error,)
    assert unwrap_host_run_exception(group, error) is error


async def test_fix_running_host_re_raises_the_blocks_own_exception() -> None:
    error = KeyError("raised in the block")
    with trio.fail_after(10), pytest.raises(KeyError) as caught:
        async with running_host(generate_identity()), running_host(generate_identity()):
            raise error
    assert caught.value is error


def test_unwrap_keeps_a_group_that_holds_other_errors() -> None:
    error = KeyError("mine")
    other = RuntimeError("py-libp2p's own")
    mixed = ExceptionGroup("outer", [ExceptionGroup("inner", [error]), other])
    assert unwrap_host_run_exception(mixed, error) is mixed
    assert unwrap_host_run_exception(mixed, None) is mixed
    only_other = ExceptionGroup("outer", [other])
    assert unwrap_host_run_exception(only_other, error) is only_other


def test_unwrap_finds_the_error_at_any_depth_and_keeps_a_raised_group_whole() -> None:
    error = KeyError("mine")
    deep = ExceptionGroup("1", [ExceptionGroup("2", [ExceptionGroup("3", [error])])])
    assert unwrap_host_run_exception(deep, error) is error
    raised_group = ExceptionGroup("the block's own group", [KeyError("a"), KeyError("b")])
    wrapped = ExceptionGroup("1", [ExceptionGroup("2", [raised_group])])
    assert unwrap_host_run_exception(wrapped, raised_group) is raised_group


# --- A failed dial blocks the peer for 60 s; a stale address hides the new one ----------------


async def test_bug_one_failed_dial_blocks_every_dial_to_the_peer() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            good = info_from_p2p_addr(listen_addrs(b)[0])
            dead_addr = f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{b.get_id()}"
            dead = info_from_p2p_addr(Multiaddr(dead_addr))
            with pytest.raises(SwarmException):
                await a.connect(dead)
            forget_peer_addrs(a, b.get_id())  # (keep the stale-address bug out of this test)
            with pytest.raises(SwarmException, match="negative cache"):
                await a.connect(good)  # b listens there, but py-libp2p does not even try
            clear_dial_backoff(a, b.get_id())
            await a.connect(good)
            assert len(connections_to(a, b.get_id())) == 1


async def test_bug_a_stale_address_hides_the_one_given_to_connect() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a, running_host(generate_identity()) as b:
            good = info_from_p2p_addr(listen_addrs(b)[0])
            dead_port = free_port()
            stale = Multiaddr(f"/ip4/127.0.0.1/tcp/{dead_port}")
            a.get_peerstore().add_addrs(b.get_id(), [stale], 120)
            with pytest.raises(SwarmException) as caught:
                await a.connect(good)  # b listens at `good`, but the old address is dialled
            assert any(f"/tcp/{dead_port}" in str(exc) for exc in chain(caught.value))
            forget_peer_addrs(a, b.get_id())
            clear_dial_backoff(a, b.get_id())
            await a.connect(good)
            assert len(connections_to(a, b.get_id())) == 1


async def test_fixes_are_harmless_for_a_peer_the_host_never_heard_of() -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity()) as a:
            stranger = ID.from_pubkey(generate_identity().public_key)
            clear_dial_backoff(a, stranger)
            forget_peer_addrs(a, stranger)
            assert stranger not in a.get_peerstore().peer_ids()


# --- Listening: a taken port is shared silently; a failed bind is ignored ---------------------


def _bare(addr: Multiaddr) -> Multiaddr:
    """``addr`` without its ``/p2p/<peer id>`` suffix."""
    return Multiaddr(str(addr).rsplit("/p2p/", 1)[0])


@pytest.mark.parametrize("transport", ["tcp", "quic-v1"])
async def test_bug_a_second_host_listens_on_a_port_another_host_has(transport: str) -> None:
    with trio.fail_after(10):
        async with running_host(generate_identity(), HostConfig(quic=True)) as a:
            (taken,) = [
                _bare(addr)
                for addr in listen_addrs(a)
                if transport in [proto.name for proto in addr.protocols()]
            ]
            b = new_host(key_pair=generate_identity(), listen_addrs=[taken])
            async with b.run([taken]):  # no error: both hosts now listen on the same port
                try:
                    assert b.get_transport_addrs() == [taken]
                finally:
                    await close_host(b, grace=5)
            with pytest.raises(ConfigError, match="in use"):
                check_listen_addrs_free([taken])


def _tcp_listener_tasks() -> list[trio.lowlevel.Task]:
    return [task for task in live_tasks() if "TCPListener" in task.name]


async def test_bug_a_host_that_cannot_bind_runs_deaf_and_leaks_the_listener() -> None:
    before = _tcp_listener_tasks()
    with socket.socket() as blocker, trio.fail_after(10):
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)  # a plain socket holds the port
        addr = Multiaddr(f"/ip4/127.0.0.1/tcp/{blocker.getsockname()[1]}")
        host = new_host(key_pair=generate_identity())
        track_listeners(host)  # only records what py-libp2p creates
        async with host.run([addr]):  # no error...
            try:
                assert host.get_transport_addrs() == []  # ...and no listener
                with pytest.raises(ConfigError, match=f"could not listen on {addr}"):
                    require_listeners(host, [addr])
            finally:
                await host.close()
        await trio.testing.wait_all_tasks_blocked()
        assert len(_tcp_listener_tasks()) == len(before) + 1  # closed host, listener task alive
        await close_orphan_listeners(host)
        await trio.testing.wait_all_tasks_blocked()
        assert _tcp_listener_tasks() == before
        with pytest.raises(ConfigError, match="in use"):
            check_listen_addrs_free([addr])


async def test_fix_listen_checks_pass_for_free_and_listening_addresses() -> None:
    free = [Multiaddr(DEFAULT_LISTEN_ADDR), Multiaddr(f"/ip4/127.0.0.1/udp/{free_port()}/quic-v1")]
    check_listen_addrs_free(free)
    with trio.fail_after(10):
        async with running_host(generate_identity(), HostConfig(quic=True)) as a:
            require_listeners(a, HostConfig(quic=True).listen_multiaddrs())


# --- (Worked around in host.build_host, not here: the 250 ms connect) -------------------------


async def test_bug_with_default_connection_config_every_connect_takes_250_ms() -> None:
    """Why build_host sets ``max_connections_per_peer=1`` (notes §1 and §9.1)."""
    a, b = new_host(key_pair=generate_identity()), new_host(key_pair=generate_identity())
    listen = [Multiaddr(DEFAULT_LISTEN_ADDR)]
    with trio.fail_after(10):
        async with a.run(listen), b.run(listen):
            try:
                started = trio.current_time()
                await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
                elapsed = trio.current_time() - started
            finally:
                await close_host(b, grace=5)
                await close_host(a, grace=5)
    assert elapsed >= 0.25  # the happy-eyeballs delay is always waited out


# --- Every inbound connection holds an inbound slot until the swarm stops ---------------------


async def _inbound_slots_after_cycles(*, fixed: bool, cycles: int) -> int:
    """Connect to a host and disconnect ``cycles`` times; return its inbound slots in use."""
    from dndm_p2p.host.build import connect
    from protocols.libp2p_fixes.host import release_inbound_slots

    server = new_host(key_pair=generate_identity())
    if fixed:
        release_inbound_slots(server)
    async with server.run([Multiaddr(DEFAULT_LISTEN_ADDR)]):
        addr = server.get_addrs()[0]
        for _ in range(cycles):
            async with running_host(generate_identity()) as client:
                await connect(client, addr)
        with trio.fail_after(10):
            for conn in list(server.get_network().get_connections()):
                await conn.event_closed.wait()  # the server notices the closes in its own time
        await trio.testing.wait_all_tasks_blocked()
        in_use = int(server.get_network()._inbound_limiter.borrowed_tokens)
        await close_host(server, grace=5)
    return in_use


async def test_bug_closed_inbound_connections_keep_their_inbound_slots() -> None:
    with trio.fail_after(30):
        assert await _inbound_slots_after_cycles(fixed=False, cycles=3) == 3


async def test_fix_release_inbound_slots_gives_slots_back_when_connections_close() -> None:
    with trio.fail_after(30):
        assert await _inbound_slots_after_cycles(fixed=True, cycles=3) == 0


# --- close_peer forgets a connection that arrived while it was closing the old ones ------------


async def _listed_after_close_peer(*, fixed: bool) -> bool:
    """Close a peer while a second connection to it 'arrives'; is that one still listed?"""
    from dndm_p2p.host.build import connect
    from protocols.libp2p_fixes.host import keep_new_connections_on_close_peer

    async with (
        running_host(generate_identity()) as server,
        running_host(generate_identity()) as client,
    ):
        swarm = client.get_network()
        # running_host installs the workaround; start again from py-libp2p's own method.
        swarm.close_peer = type(swarm).close_peer.__get__(swarm)
        if fixed:
            keep_new_connections_on_close_peer(client)
        peer = await connect(client, listen_addrs(server)[0])
        (old,) = swarm.connections[peer]
        arrived = object.__new__(type(old))  # stands for a reconnection landing mid-close
        arrived.muxed_conn = old.muxed_conn
        arrived.event_closed = trio.Event()
        close_old = old.close

        async def close_and_reconnect() -> None:
            await close_old()
            swarm.connections[peer].append(arrived)

        old.close = close_and_reconnect
        await swarm.close_peer(peer)
        return arrived in swarm.connections.get(peer, [])


async def test_bug_close_peer_forgets_a_connection_that_arrived_meanwhile() -> None:
    with trio.fail_after(20):
        assert not await _listed_after_close_peer(fixed=False)


async def test_fix_keep_new_connections_on_close_peer() -> None:
    with trio.fail_after(20):
        assert await _listed_after_close_peer(fixed=True)


def _inbound_cap(host: Any) -> int | None:
    manager = host.get_network()._resource_manager
    return None if manager is None else manager.connection_limits.max_established_inbound


def test_bug_the_default_resource_manager_admits_256_inbound_connections() -> None:
    """py-libp2p caps established inbound connections at 256 whatever the connection manager
    allows (the default max_connections is already 300)."""
    host = new_host(key_pair=generate_identity())
    assert _inbound_cap(host) == 256


async def test_hosts_admit_as_many_connections_as_configured() -> None:
    async with running_host(generate_identity(), HostConfig(max_connections=1000)) as host:
        assert _inbound_cap(host) == 1000
    size_resource_manager(host, 100)  # under py-libp2p's cap: left alone
    assert _inbound_cap(host) == 1000
