"""The wire layer of dndm-p2p: protobuf schemas and constants of our own protocols.

* :mod:`protocols.v1` holds the version 1 schemas (``*.proto``) and the modules
  generated from them (``*_pb2.py`` / ``*_pb2.pyi``).
* :mod:`protocols.ids` holds the protocol ids, the protocol version and size limits.
* :mod:`protocols.errors` holds the exception hierarchy; :mod:`protocols.validation` the
  checks every config class makes of its fields.
* :mod:`protocols.generate` regenerates the ``*_pb2`` modules
  (``python -m protocols.generate [--check]``).

See ``docs/wire-protocol.md`` for the protocol description. This package imports
nothing from the rest of the project.
"""
