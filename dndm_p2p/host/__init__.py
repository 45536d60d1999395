"""py-libp2p hosts built the way DNDM needs them, and node identities.

* :mod:`dndm_p2p.host.build` — building, running, dialling and closing a host;
* :mod:`dndm_p2p.host.identity` — Ed25519 identities and key files.
"""
