"""The ``dndm`` command line."""

from dndm_p2p.cli.main import main

__all__ = ["main"]
