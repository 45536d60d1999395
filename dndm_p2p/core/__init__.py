"""The in-process core: routes, patterns, QoS, handles, the router and request/reply.

It imports nothing of py-libp2p; the node builds on it.  Layers, lowest first (each module
imports only those below it): ``route`` < ``pattern`` < ``qos`` < ``links`` < ``queue`` <
``intent``, ``interest`` < ``router`` < ``rpc``; ``adverts`` turns handles into wire adverts.
"""
