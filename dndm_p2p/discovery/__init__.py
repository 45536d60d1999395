"""Discovery: finding the peers whose intents and interests match ours.

* :mod:`dndm_p2p.discovery.component` — :class:`Discovery`, the node's discovery component
  (DHT, gossip, mDNS and bootstrap peers wired together; its only output is a dial);
* :mod:`dndm_p2p.discovery.config` — the gossip and mDNS settings a node's config nests;
* :mod:`dndm_p2p.discovery.gossip` — signed adverts on GossipSub topics;
* :mod:`dndm_p2p.discovery.announcements` — their wire form;
* :mod:`dndm_p2p.discovery.pubsub` — the Pubsub that carries them (py-libp2p's, with our fixes);
* :mod:`dndm_p2p.discovery.advert_table` — what peers announced, with expiry;
* :mod:`dndm_p2p.discovery.namespaces` — the namespace and gossip topic of a route or pattern;
* :mod:`dndm_p2p.discovery.mdns` — peers on the LAN.
"""
