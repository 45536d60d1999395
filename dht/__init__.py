"""Routes as Kademlia keys: key derivation, provider records, validation, republishing, lookups.

Built on py-libp2p's kad-dht (``/ipfs/kad/1.0.0``), so go-libp2p and js-libp2p peers share the
same DHT.  Imports only :mod:`protocols` and libp2p (never :mod:`dndm_p2p`).
"""
