"""The wire layer of dndm-p2p: protobuf schemas and constants of our own protocols.

* :mod:`protocols.v1` holds the version 1 schemas (``*.proto``) and the modules
  generated from them (``*_pb2.py`` / ``*_pb2.pyi``).
* :mod:`protocols.ids` holds the protocol ids, the protocol version and size limits.
* :mod:`protocols.errors` holds the exception hierarchy; :mod:`protocols.validation` the
  checks every config class makes of its fields.
* :mod:`protocols.generate` regenerates the ``*_pb2`` modules
  (``python -m protocols.generate [--check]``).
* :mod:`protocols.addrs` classifies multiaddrs (public, private network, relayed).
* :mod:`protocols.libp2p_fixes` holds every workaround for a py-libp2p defect, one module per
  py-libp2p area; its docstring is the index.  Importing :mod:`protocols` loads no py-libp2p.

See ``docs/wire-protocol.md`` for the protocol description. This package imports
nothing from the rest of the project.
"""
