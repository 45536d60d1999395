"""simnet: many real DNDM nodes in one process over an emulated network, under virtual time.

* :mod:`simnet.net`: ``SimNetwork`` (addresses, latency, uplink, loss, partitions, NAT classes,
  counters) and its py-libp2p transport.
* :mod:`simnet.clock`: trio's MockClock, py-libp2p's wall-clock reads on virtual time, seeded
  random streams and identities.
* :mod:`simnet.hosts`: real py-libp2p hosts on a simulated node (Noise or plaintext, yamux or
  mplex, connection limits per node class).
* :mod:`simnet.experiments`: runnable experiments, e.g. ``python -m
  simnet.experiments.dht_lookup N SEED --fixed|--stock``.
"""
