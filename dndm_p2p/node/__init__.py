"""The node: DNDM over libp2p, linking intents and interests across processes and machines.

Importing this package loads py-libp2p; :mod:`dndm_p2p` serves these names lazily.

* :mod:`dndm_p2p.node.node` — the :class:`Node`;
* :mod:`dndm_p2p.node.types` — its public value types (events, snapshots, peer counters);
* :mod:`dndm_p2p.node.services` — what the node's parts may ask of it;
* :mod:`dndm_p2p.node.session_table` — the running sessions: started, ended, served streams;
* :mod:`dndm_p2p.node.session` — one control session per connected peer;
* :mod:`dndm_p2p.node.control_outbox` — the bounded out-queue of a peer's control stream;
* :mod:`dndm_p2p.node.control_admission` — control requests refused (rate, ping size);
* :mod:`dndm_p2p.node.peer_links` — the data links of one peer, both ways;
* :mod:`dndm_p2p.node.inbound` / :mod:`dndm_p2p.node.outbound` — the two ends of a data link;
* :mod:`dndm_p2p.node.link_registry` — reliable links kept across sessions, parked and resumed;
* :mod:`dndm_p2p.node.reconnect` — the peers kept connected, and their reconnection;
* :mod:`dndm_p2p.node.watcher` / :mod:`dndm_p2p.node.moves` — connections coming and going,
  and a session moving from a relayed connection to a direct one;
* :mod:`dndm_p2p.node.advertiser` — local declarations told to peers and discovery;
* :mod:`dndm_p2p.node.events` — the node's event stream;
* :mod:`dndm_p2p.node.snapshots` — the node's peers, links and known routes, as records;
* :mod:`dndm_p2p.node.protection` — the node's protection counters;
* :mod:`dndm_p2p.node.violations` — peers dropped for breaking their limits;
* :mod:`dndm_p2p.node.components` — the optional parts, started and stopped alike;
* :mod:`dndm_p2p.node.best_effort` — closing streams that may already be gone;
* :mod:`dndm_p2p.node.streamio` — the data links' direct stream I/O;
* :mod:`dndm_p2p.node.results` — ``Result`` frames and their errors;
* :mod:`dndm_p2p.node.addressbook` — peers met, kept across restarts;
* :mod:`dndm_p2p.node.admin` — the local admin endpoint (``dndm routes``, ``dndm peers``).
"""

from dndm_p2p.node.node import HostFactory, Node
from dndm_p2p.node.types import KnownRoute, LinkStats, NodeEvent, PeerInfo

__all__ = ["HostFactory", "KnownRoute", "LinkStats", "Node", "NodeEvent", "PeerInfo"]
