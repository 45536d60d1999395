"""dndm-p2p for threaded code: the same routers, nodes and handles, with blocking calls.

The trio code runs in a background thread per router or node; every call blocks the calling
thread only, takes an optional ``timeout``, and may come from any thread.  Modules:

- ``portal``: the trio thread and the crossing into it (timeouts, held contexts, atexit);
- ``handles``: :class:`Intent`, :class:`Interest` (``with``, plain iteration);
- ``bus``: :class:`Router`, :class:`Node` (callbacks on a thread pool);
- ``rpc``: :class:`Caller`, :class:`Service`, a thin layer over :mod:`dndm_p2p.core.rpc`.

Errors are the classes of :mod:`dndm_p2p.errors`.  See ``docs/asyncio-and-threads.md``.
"""

from dndm_p2p.sync.bus import Node, Router
from dndm_p2p.sync.handles import Intent, Interest
from dndm_p2p.sync.rpc import Caller, Service

__all__ = ["Caller", "Intent", "Interest", "Node", "Router", "Service"]
