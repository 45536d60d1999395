"""The ``dndm`` command line.

::

    dndm demo                                   # a 3-node mesh in one process, no configuration
    dndm keygen --out node.key                  # an Ed25519 identity; prints the peer id
    dndm node --listen /ip4/0.0.0.0/tcp/4001 --key node.key
    dndm sub 'robot.*.temp' --type dndm.demo.v1.Temperature --peer /ip4/.../p2p/12D3KooW...
    dndm pub robot.arm.temp --type dndm.demo.v1.Temperature --generate --count 10 --peer ...
    echo '{"celsius": 21.5}' | dndm pub robot.arm.temp --type dndm.demo.v1.Temperature --peer ...
    dndm node --bootstrap --listen /ip4/0.0.0.0/tcp/4001 --key boot.key   # a well-known entry point
    dndm node --bootstrap-peer /ip4/.../tcp/4001/p2p/12D3KooW...          # discovery through it
    dndm routes --key node.key          # the intents and interests a running node knows of
    dndm peers --admin-socket /run/user/1000/dndm/hub.sock --json

Discovery: ``dndm node`` finds peers through the Kademlia DHT and GossipSub adverts (seeded by
``--bootstrap-peer``; ``--no-dht``, ``--no-gossip`` turn either off) and on the LAN with mDNS
(``--no-mdns`` turns it off; ``--mdns-interface`` chooses the interface addresses, 127.0.0.1 by
default).  ``dndm pub`` and ``dndm sub`` use the DHT and gossip only when given a
``--bootstrap-peer``.  ``dndm node --bootstrap`` runs a bootstrap server: a DHT server that
relays every advert topic, allowing many connections.  The addresses of peers met are kept in
an address book (``--address-book``; by default ``<key file>.addressbook`` next to ``--key``,
none without a key).

Introspection: ``dndm node`` serves ``dndm routes`` and ``dndm peers`` on a Unix socket
(``--admin-socket``), by default in the per-user runtime directory
(``$XDG_RUNTIME_DIR/dndm/``, else ``<tmp>/dndm-<uid>/``, mode 0700) and named after the key
file (``<key stem>-<hash of its path>.sock``), else the node name (``<name>.sock``), else the
process id (``node-<pid>.sock``).  ``dndm routes`` and ``dndm peers`` find it the same way from
``--key`` or ``--name``, or with neither, use the only socket in that directory.  They print a
table, or one JSON object per line with ``--json``.

Output is made for scripts: ``dndm node`` prints JSON lines on stdout (``listening`` first, then
peer events); ``dndm sub`` prints one JSON line per message on stdout; status lines of ``pub``
and ``sub`` (``listening``, ``linked``, peer events, ``done``) are JSON lines on stderr.

Exit status: 0 success (also after SIGINT/SIGTERM, which stop a command cleanly); 2 a usage
error or a permanent error (bad option, bad type, bad route, bad input); 3 a transient error
(nobody subscribed in time, a peer unreachable, messages not acknowledged in time).  Errors are
printed as ``dndm: error: <message>`` on stderr.

The package, one module per job:

* :mod:`~dndm_p2p.cli.main`: the entry point (the parser assembled from the commands, errors
  mapped to exit statuses, early signals, py-libp2p's log level);
* :mod:`~dndm_p2p.cli.demo`, :mod:`~dndm_p2p.cli.keygen`, :mod:`~dndm_p2p.cli.node`,
  :mod:`~dndm_p2p.cli.introspect` (``routes``, ``peers``), :mod:`~dndm_p2p.cli.pub`,
  :mod:`~dndm_p2p.cli.sub`: one module per command;
* :mod:`~dndm_p2p.cli.plugins`: commands added by other distributions through the
  ``dndm.commands`` entry points (``dndm sim`` comes from simnet), and the contract they fulfil;
* :mod:`~dndm_p2p.cli.options`: options shared by several commands, argument types;
* :mod:`~dndm_p2p.cli.running`: the node a command runs, and its clean stop on a signal;
* :mod:`~dndm_p2p.cli.runtime`: where admin sockets live and how they are named;
* :mod:`~dndm_p2p.cli.events`, :mod:`~dndm_p2p.cli.output`: what the commands print;
* :mod:`~dndm_p2p.cli.signals`, :mod:`~dndm_p2p.cli.exitcodes`: stop signals, exit statuses;
* :mod:`~dndm_p2p.cli.msgtypes`: message types named on the command line, JSON conversion.
"""

from dndm_p2p.cli.main import main

__all__ = ["main"]
