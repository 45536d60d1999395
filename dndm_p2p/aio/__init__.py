"""dndm-p2p for asyncio programs: the same routers, nodes and handles, awaited from asyncio.

The trio code runs as a trio *guest run* on the running asyncio loop (one per loop, shared by
every router and node of that loop), chosen by measurement over a trio thread: see
``docs/asyncio-and-threads.md``.  Modules:

- ``runtime``: the guest run, its lifetime, and the crossings both ways (cancellation too);
- ``handles``: :class:`Intent`, :class:`Interest`;
- ``bus``: :class:`Router`, :class:`Node`;
- ``rpc``: :class:`Caller`, :class:`Service`, a thin layer over :mod:`dndm_p2p.core.rpc`.

Errors are the classes of :mod:`dndm_p2p.errors`.
"""

from dndm_p2p.aio.bus import Node, Router
from dndm_p2p.aio.handles import Intent, Interest
from dndm_p2p.aio.rpc import Caller, Service

__all__ = ["Caller", "Intent", "Interest", "Node", "Router", "Service"]
