"""The in-process core: routes, patterns, QoS, handles, the router and request/reply.

It imports nothing of py-libp2p; the node builds on it.  Layers, lowest first (each module
imports only those below it): ``route`` < ``pattern`` < ``qos`` < ``links`` < ``queue`` <
``state`` (one route's sources and sinks) < ``handle`` < ``intent``, ``interest`` <
``lowlevel`` (the route table; what transports use) < ``rpc`` (request/reply over handles) <
``router`` (what applications use; it makes callers and services); ``adverts`` turns handles
into wire adverts.
"""
