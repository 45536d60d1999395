"""The exception hierarchy, re-exported for applications.

The classes live in :mod:`protocols.errors`, the bottom layer, so that the wire code can raise
them without importing the library above it; applications import them from here or from
:mod:`dndm_p2p`.
"""

from protocols.errors import *  # noqa: F403 - this module is the hierarchy's public home
from protocols.errors import __all__ as __all__
