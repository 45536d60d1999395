"""NAT traversal through real NATs: nodes in network namespaces, behind nftables NAT routers.

Each test builds its own lab (``tests/support/natlab.py``: unique namespace prefix; namespaces, veth
pairs and rules removed afterwards, whatever happens) and runs every node as its own process
(``ip netns exec <ns> python -m tests.support.nat_peer``):

* ``relay`` (198.18.0.2): public; bootstrap node, circuit relay and AutoNAT server;
* ``pub1`` (198.18.10.2): public; a second AutoNAT server;
* ``a`` behind ``nat1`` and ``b`` behind ``nat2``: private; ``a`` publishes, ``b`` subscribes
  (reliable) by dialling ``a``'s relayed address.

The figures (time from subscribe to the first message through the relay, time to the direct
connection, punch result) are printed; run with ``-s`` to see them.  The tests skip, saying
why, where network namespaces or nftables are unavailable (not root, ``nft`` missing).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from dndm_p2p.host.identity import load_or_create_identity, peer_id_of
from tests.support.natlab import LAN_HOST, PORT, PUBLIC_IP, NatLab, lab_unavailable
from tests.support.processes import Cluster, Proc, Record, cluster

_UNAVAILABLE = lab_unavailable()
pytestmark = [
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

PEER = [sys.executable, "-m", "tests.support.nat_peer"]
ROUTE = "lab.stream"
#: Seconds a relayed link runs before the hole punch starts (so the first messages, and the
#: move to the direct connection mid-stream, are both exercised).
PUNCH_DELAY = 2.0
PUBLIC_NAT = {"relay_client": "never", "autonat_confirmations": 2}
PRIVATE_NAT = {"autonat_confirmations": 2, "punch_delay": PUNCH_DELAY}


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[NatLab]:
    """A lab with the NAT types ``request.param`` (nat1, nat2), torn down afterwards."""
    nat1, nat2 = request.param
    built = NatLab()
    try:
        built.up(nat1, nat2, publics=("relay", "pub1"))
        yield built
    finally:
        built.down()
    assert built.leftovers() == [], "the lab's namespaces outlived it"


def _addr(ip: str, key: Path) -> str:
    return f"/ip4/{ip}/tcp/{PORT}/p2p/{peer_id_of(load_or_create_identity(key))}"


async def _start_all(group: Cluster, lab: NatLab, keys: Path) -> dict[str, Proc]:
    """Start relay, pub1, a and b at once (their ids are known from their key files)."""
    relay = _addr(PUBLIC_IP["relay"], keys / "relay.key")
    pub1 = _addr(PUBLIC_IP["pub1"], keys / "pub1.key")
    specs: dict[str, tuple[str, list[str], dict[str, Any]]] = {
        "relay": (PUBLIC_IP["relay"], [], {**PUBLIC_NAT, "relay_service": True}),
        "pub1": (PUBLIC_IP["pub1"], ["--bootstrap", relay], PUBLIC_NAT),
        "a": (LAN_HOST["a"][1], ["--bootstrap", relay, "--bootstrap", pub1], PRIVATE_NAT),
        "b": (LAN_HOST["b"][1], ["--bootstrap", relay, "--bootstrap", pub1], PRIVATE_NAT),
    }
    procs = {}
    for wave in (("relay", "pub1"), ("a", "b")):
        # The public nodes first: a node does not retry a bootstrap node that was not up yet.
        for name in wave:
            ip, extra, nat = specs[name]
            argv = [*PEER, "--name", name, "--listen", f"/ip4/{ip}/tcp/{PORT}"]
            argv += ["--key", str(keys / f"{name}.key"), "--nat", json.dumps(nat), *extra]
            procs[name] = await group.start(name, lab.exec_argv(name, argv))
        for name in wave:
            await procs[name].event("listening")
    return procs


async def _status(proc: Proc) -> Record:
    mark = proc.mark()
    await proc.send(op="status")
    return await proc.event("status", since=mark)


def _nat_event(kind: str, detail: str | None = None) -> Any:
    return lambda r: r.get("event") == kind and (detail is None or r.get("detail") == detail)


async def _run_link(procs: dict[str, Proc], count: int) -> dict[str, Any]:
    """``b`` subscribes (reliable) to ``a``'s route through ``a``'s relayed address; ``a``
    streams ``count`` messages.  Returns the figures; checks nothing is lost."""
    a, b = procs["a"], procs["b"]
    listening = await a.event("listening")
    if not any("/p2p-circuit/" in x for x in listening["addrs"]):
        # (A reservation made while the node was starting, before the peer program subscribed
        # to its events, shows only in the addresses it listed.)
        await a.wait_for(_nat_event("reserved"), what="a reservation on the relay", seconds=60)
    circuit = next(x for x in (await _status(a))["addrs"] if "/p2p-circuit/" in x)
    a_id = listening["peer"]
    await a.send(op="publish", id="pub", route=ROUTE, type="Sample")
    await a.event("declared", id="pub")
    mark_a = a.mark()
    subscribed = trio.current_time()
    await b.send(op="subscribe", id="sub", route=ROUTE, type="Sample", reliable=True)
    await b.send(op="connect", addr=circuit, keep=True)
    await b.event("connected", peer=a_id)
    await a.wait_for(
        lambda r: r.get("event") == "link" and r["kind"] == "linked", since=mark_a, what="link"
    )
    await a.send(op="stream", id="pub", count=count, rate=60)
    await b.wait_values("sub", 1, seconds=30)
    first = trio.current_time() - subscribed
    first_index = next(i for i, r in enumerate(b.out) if r.get("event") == "recv")
    values = await b.wait_values("sub", count, seconds=90)
    assert values == list(range(count)), "messages lost, repeated or out of order"
    return {"first_message_s": round(first, 3), "first_index": first_index, "a_id": a_id}


async def _check_reachability(procs: dict[str, Proc]) -> dict[str, str]:
    expected = {"relay": "public", "pub1": "public", "a": "private", "b": "private"}
    for name, status in expected.items():
        await procs[name].wait_for(
            _nat_event("reachability", status), what=f"reachability {status}", seconds=60
        )
    return {name: (await _status(procs[name]))["reachability"] for name in expected}


@pytest.mark.parametrize("lab", [("cone", "cone")], indirect=True)
async def test_cone_nats_link_through_the_relay_then_move_to_a_direct_connection(
    lab: NatLab, tmp_path: Path
) -> None:
    async with cluster() as group:
        procs = await _start_all(group, lab, tmp_path)
        figures = await _run_link(procs, count=360)
        a, b = procs["a"], procs["b"]
        direct = await b.wait_for(_nat_event("direct"), what="a direct connection", seconds=60)
        assert first_before(b, figures["first_index"], direct), "first message was not relayed"
        await b.wait_for(_nat_event("peer_moved"), what="the session moving", seconds=30)
        # The move is no error: the links resume on the new session without complaint.
        errors = [r for p in (a, b) for r in p.out if r.get("event") == "error"]
        assert not [r for r in errors if "ended the link" in str(r.get("detail"))], errors
        conns = (await _status(b))["conns"][figures["a_id"]]
        assert conns == [[f"/ip4/{lab_wan('a')}/tcp/{PORT}"]], conns
        reach = await _check_reachability(procs)
        assert reach == {"relay": "public", "pub1": "public", "a": "private", "b": "private"}
        punched = [r for p in (a, b) for r in p.out if r.get("event") == "punch_started"]
        print(
            "\nNAT cone/cone:",
            json.dumps(
                {
                    "subscribe_to_first_message_via_relay_s": figures["first_message_s"],
                    "relayed_to_direct_s": float(direct["detail"]),
                    "punch_attempts": len(punched),
                    "result": "direct",
                }
            ),
        )


@pytest.mark.parametrize("lab", [("cone", "symmetric")], indirect=True)
async def test_a_symmetric_nat_keeps_the_link_on_the_relay(lab: NatLab, tmp_path: Path) -> None:
    async with cluster() as group:
        procs = await _start_all(group, lab, tmp_path)
        figures = await _run_link(procs, count=120)
        a, b = procs["a"], procs["b"]
        failed = await _either(a, b, _nat_event("punch_failed"), seconds=90)
        await a.send(op="stream", id="pub", start=120, count=60, rate=60)
        values = await b.wait_values("sub", 180, seconds=60)
        assert values == list(range(180)), "the relayed link lost messages after the punch failed"
        conns = (await _status(b))["conns"][figures["a_id"]]
        assert all("/p2p-circuit/" in addr for conn in conns for addr in conn), conns
        assert not any(r.get("event") == "direct" for p in (a, b) for r in p.out)
        reach = await _check_reachability(procs)
        assert reach == {"relay": "public", "pub1": "public", "a": "private", "b": "private"}
        print(
            "\nNAT cone/symmetric:",
            json.dumps(
                {
                    "subscribe_to_first_message_via_relay_s": figures["first_message_s"],
                    "punch_failed_after_s": failed["t"],
                    "result": "relayed",
                }
            ),
        )


def first_before(proc: Proc, index: int, record: Record) -> bool:
    """True when output record ``index`` came before ``record``."""
    return index < proc.out.index(record)


def lab_wan(host: str) -> str:
    """The public (WAN) address of the NAT in front of ``host``."""
    from tests.support.natlab import NAT_WAN

    return NAT_WAN[LAN_HOST[host][0]]


async def _either(a: Proc, b: Proc, predicate: Any, *, seconds: float) -> Record:
    found: list[Record] = []
    async with trio.open_nursery() as nursery:

        async def watch(proc: Proc) -> None:
            found.append(await proc.wait_for(predicate, seconds=seconds, what="event"))
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch, a)
        nursery.start_soon(watch, b)
    return found[0]
