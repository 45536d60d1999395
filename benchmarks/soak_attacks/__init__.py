"""Hostile peers for the soak benchmark (:mod:`benchmarks.bench_soak`), one module per attack.

The contract every attack module keeps, so the soak runs any list of them in turn:

* it is run as ``python -m benchmarks.soak_attacks.<name> --target ADDR --route ROUTE
  --seconds N [--budget-mb M]``, where ``ADDR`` is the victim's
  ``/ip4/127.0.0.1/tcp/<port>/p2p/<id>`` and ``ROUTE`` a route the victim publishes, as the
  wire names it (``dndm.bench.Tick@soak.legit``);
* it attacks only ``127.0.0.1`` (:func:`benchmarks.soak_attacks.peer.parse_target` refuses any
  other address) and uses only public libp2p and DNDM wire behaviour: its own py-libp2p host,
  frames of ``protocols/v1`` written by hand, raw TCP;
* it stops on its own after ``N`` seconds (the benchmark kills it a few seconds later if not),
  keeps what it makes the victim hold below ``--budget-mb`` where it can tell, and prints one
  JSON object on stdout as its last line: ``{"attack": name, "stat": <number>, "unit": ...,
  ...}``, ``stat`` being its main measure (pings sent, answers received, connections held);
* its module defines ``async def attack(target: Target, report: Report) -> None``, which
  updates ``report`` as it goes; :func:`benchmarks.soak_attacks.peer.main` parses the command
  line, runs it under the time limit and prints the report, so an attack blocked by the victim
  still reports what it did.

:data:`ATTACKS` lists the modules in the order the soak runs them.
"""

from __future__ import annotations

__all__ = ["ATTACKS"]

#: Every attack module, in the order the soak benchmark runs them by default.
ATTACKS: tuple[str, ...] = (
    "ping_flood",
    "partial_frames",
    "stalled_subscriber",
    "held_connections",
    "find_node_flood",
    "unread_control",
    "third_party_adverts",
)
