"""The node: DNDM over libp2p, linking intents and interests across processes and machines.

Importing this package loads py-libp2p; :mod:`dndm_p2p` serves these names lazily.

* :mod:`dndm_p2p.node.node` — the :class:`Node` and its public value types;
* :mod:`dndm_p2p.node.session` — one control session per connected peer;
* :mod:`dndm_p2p.node.inbound` / :mod:`dndm_p2p.node.outbound` — the two ends of a data link;
* :mod:`dndm_p2p.node.streamio` — the data links' direct stream I/O;
* :mod:`dndm_p2p.node.results` — ``Result`` frames and their errors;
* :mod:`dndm_p2p.node.addressbook` — peers met, kept across restarts;
* :mod:`dndm_p2p.node.admin` — the local admin endpoint (``dndm routes``, ``dndm peers``).
"""

from dndm_p2p.node.node import HostFactory, KnownRoute, LinkStats, Node, NodeEvent, PeerInfo

__all__ = ["HostFactory", "KnownRoute", "LinkStats", "Node", "NodeEvent", "PeerInfo"]
