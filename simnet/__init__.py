"""simnet: many real DNDM nodes in one process over an emulated network, under virtual time.

* :mod:`simnet.net`: ``SimNetwork``, the network model (addresses, latency, uplink, loss,
  partitions, NAT admission, crashes); :mod:`simnet.node_class`: the node classes;
  :mod:`simnet.transport`: the simulated nodes' py-libp2p transport, connections and streams.
* :mod:`simnet.clock`: trio's MockClock, py-libp2p's wall-clock reads on virtual time, seeded
  random streams and identities.
* :mod:`simnet.hosts`: real py-libp2p hosts on a simulated node (Noise or plaintext, yamux or
  mplex, connection limits per node class).
* :mod:`simnet.scenario`: the scenario format (value types, validation, files).
* :mod:`simnet.runner`: the run loop, with its pieces :mod:`simnet.slot`,
  :mod:`simnet.workload`, :mod:`simnet.latency`, :mod:`simnet.isolation`,
  :mod:`simnet.progress` and :mod:`simnet.manifest`; :mod:`simnet.metrics` and
  :mod:`simnet.report` turn a run's events into a summary and a report; :mod:`simnet.cli` is
  ``dndm sim``.
* :mod:`simnet.experiments`: runnable experiments, e.g. ``python -m
  simnet.experiments.dht_lookup N SEED --fixed|--stock``.
"""
